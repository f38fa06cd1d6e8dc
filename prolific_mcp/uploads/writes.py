"""Writing beside the user's file (the rejected-records file), guarded as tightly as reads
(docs/architecture.md, Files and pre-flight): the folder opened once without following a link, containment judged
on its descriptor, the file created relative to it with `O_CREAT|O_EXCL|O_NOFOLLOW`, partial files removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Final, TypeVar

from prolific_mcp.settings import shown_path as shown

T = TypeVar("T")


def descriptor_path(fd: int) -> str | None:
    """The path the kernel has for an open descriptor (Linux, macOS), or None where it cannot tell.

    `O_NOFOLLOW` only guards the last component of a path; this catches a directory on the path that was swapped
    for a link after the path was checked.
    """
    platform = sys.platform  # a plain value: the check runs on every platform, not at type-checking time
    try:
        if platform.startswith("linux"):
            link = os.readlink(f"/proc/self/fd/{fd}")
            return link if link.startswith("/") else None
        if platform == "darwin":  # pragma: no cover - macOS
            import fcntl

            buffer = fcntl.fcntl(fd, 50, b"\0" * 1024)  # F_GETPATH
            return os.fsdecode(buffer.split(b"\0", 1)[0]) or None
    except OSError:
        return None
    return None  # pragma: no cover - other platforms


MAX_NAME_ATTEMPTS: Final = 1000
_WRITE_ERRORS: Final = {
    "ENOSPC": "the disk is full",
    "EDQUOT": "the disk quota is used up",
    "EFBIG": "the file would be larger than the system allows",
    "EROFS": "the folder is on a read-only file system",
    "EACCES": "the folder is not writable",
    "EPERM": "the folder is not writable",
    "EIO": "the disk reported an input/output error",
}


class WriteFailure(Exception):
    """A file beside the user's could not be written; `reason` is a clause a summary can state."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def write_problem(exc: OSError) -> str:
    """Why a write failed, in words ('the disk is full'), from its errno."""
    name = errno.errorcode.get(exc.errno or 0, "")
    return _WRITE_ERRORS.get(name) or (exc.strerror or str(exc)).lower()


def rejected_names(original: str) -> Iterator[str]:
    """`<stem>.rejected<ext>`, then `<stem>.rejected.1<ext>`, `.2`…: the names tried for the rejected records."""
    stem, ext = os.path.splitext(original)
    yield f"{stem}.rejected{ext}"
    for n in range(1, MAX_NAME_ATTEMPTS):
        yield f"{stem}.rejected.{n}{ext}"


def _inside_allowed(dir_fd: int, opened_as: Path, allowed: Sequence[Path]) -> bool:
    """Whether an open directory lies inside an allowed directory, judged on the descriptor, not on a path.

    Where the kernel names the descriptor (`/proc/self/fd` on Linux, `F_GETPATH` on macOS), that name must lie
    inside an allowed directory; elsewhere the descriptor's `..` chain must reach an allowed directory (its
    device and inode, as the allowed path names it now, without following a link).
    """
    roots = [Path(os.path.abspath(root)) for root in allowed]
    kernel_path = descriptor_path(dir_fd)
    if kernel_path is not None:
        where = Path(kernel_path)
        return any(where == root or where.is_relative_to(root) for root in roots)
    if os.open not in os.supports_dir_fd:  # pragma: no cover - Windows: no descriptor-relative opens
        real = Path(os.path.realpath(opened_as))
        return any(real == root or real.is_relative_to(root) for root in roots)
    return _inside_by_parents(dir_fd, roots)


def _inside_by_parents(dir_fd: int, roots: Sequence[Path]) -> bool:
    """Whether walking up from an open directory (`..` relative to each descriptor) reaches an allowed directory,
    compared by device and inode (the allowed paths looked up now, without following a link)."""
    ids = set()
    for root in roots:
        with contextlib.suppress(OSError):
            st = os.stat(root, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                ids.add((st.st_dev, st.st_ino))
    current = os.dup(dir_fd)
    try:
        for _ in range(4096):
            st = os.fstat(current)
            if (st.st_dev, st.st_ino) in ids:
                return True
            parent = os.open("..", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0), dir_fd=current)
            os.close(current)
            current = parent
            pst = os.fstat(parent)
            if (pst.st_dev, pst.st_ino) == (st.st_dev, st.st_ino):
                return False  # the file system's root
        return False
    except OSError:
        return False
    finally:
        os.close(current)


def write_beside(
    original: Path,
    allowed: Sequence[Path],
    write: Callable[[BinaryIO], T],
    *,
    mode: int = 0o600,
    names: Callable[[str], Iterator[str]] = rejected_names,
    keep: Callable[[Path], bool] | None = None,
    what: str = "the rejected-records file",
) -> tuple[Path, T] | None:
    """Create a new file beside `original` and fill it with `write(sink)`; (its path, what `write` returned).

    Guarded like reads (docs/architecture.md, Files): the folder is opened once (`O_DIRECTORY|O_NOFOLLOW`), it
    must lie inside an allowed directory judged on that descriptor, and the file is created relative to the
    descriptor with `O_CREAT|O_EXCL|O_NOFOLLOW`, so a folder swapped for a link after the upload began, a taken
    name or a link (even a dangling one) at the name can never send the bytes elsewhere: a taken name or a link
    moves on to the next name. The file gets `mode` (the input's permission bits). If `write` fails (a full
    disk...), the partial file is removed and `WriteFailure` says why ("could not write the rejected-records file:
    the disk is full"). `keep(path)`, called once the file is complete, may refuse it (another process wrote
    one first): the file is removed and None returned.
    """
    folder, base = original.parent, original.name
    dir_flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
    dir_flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        dir_fd = os.open(folder, dir_flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link, or no longer a folder
            raise WriteFailure(f"could not write {what}: its folder was replaced after the upload began") from None
        raise WriteFailure(f"could not write {what}: {write_problem(exc)}") from None
    try:
        if not _inside_allowed(dir_fd, folder, allowed):
            raise WriteFailure(
                f"could not write {what}: its folder ({shown(folder)}) no longer lies inside the allowed "
                "directories (it was moved or replaced by a link after the upload began)"
            )
        return _create_and_fill(dir_fd, folder, base, write, mode & 0o666, names, keep, what)
    finally:
        os.close(dir_fd)


def _create_and_fill(
    dir_fd: int,
    folder: Path,
    base: str,
    write: Callable[[BinaryIO], T],
    mode: int,
    names: Callable[[str], Iterator[str]],
    keep: Callable[[Path], bool] | None,
    what: str,
) -> tuple[Path, T] | None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    relative = os.open in os.supports_dir_fd
    for name in names(base):
        try:
            out = os.open(name, flags, mode, dir_fd=dir_fd) if relative else os.open(folder / name, flags, mode)
        except FileExistsError:
            continue  # a file, a directory or a link (even a dangling one) holds the name: the next name
        except OSError as exc:
            raise WriteFailure(f"could not write {what}: {write_problem(exc)}") from None
        break
    else:
        raise WriteFailure(f"could not write {what}: {MAX_NAME_ATTEMPTS} names beside the file are taken")

    def remove() -> None:
        with contextlib.suppress(OSError):
            if relative:
                os.unlink(name, dir_fd=dir_fd)
            else:  # pragma: no cover - Windows
                os.unlink(folder / name)

    try:
        if hasattr(os, "fchmod"):
            os.fchmod(out, mode)  # exactly the input's bits, whatever the umask
        with os.fdopen(out, "wb") as sink:
            result = write(sink)
            sink.flush()
    except OSError as exc:
        remove()
        raise WriteFailure(f"could not write {what}: {write_problem(exc)}; no partial file was left") from None
    except BaseException:
        remove()
        raise
    path = folder / name
    if keep is not None and not keep(path):
        remove()
        return None
    return path, result
