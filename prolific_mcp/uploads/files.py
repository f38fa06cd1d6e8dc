"""Local files the agent names: the path guard, a safe open, and the one-pass pre-flight scan
(docs/architecture.md, Files and pre-flight).

A path is resolved (`~` expanded, relative paths against the first allowed directory), must be a regular file
inside an allowed directory after every symlink is resolved (compared by path components, never by string
prefix), is opened once without following a final symlink, and is checked with `fstat` on the descriptor. From
then on only the descriptor is used, so a file swapped after the check is never read.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from prolific_mcp.records import (
    FileFormat,
    format_from_filename,
)
from prolific_mcp.settings import MAX_SHOWN_PATH as MAX_SHOWN_PATH
from prolific_mcp.settings import shown_path as shown
from prolific_mcp.uploads.writes import descriptor_path, write_problem

S3_SINGLE_PUT_LIMIT: Final = 5 * 1024**3
INLINE_CONTENT_LIMIT: Final = 1024 * 1024

T = TypeVar("T")


class FileAccessError(Exception):
    """A file the server must not or cannot read; the message says what to do instead."""


@dataclass(slots=True)
class OpenedFile:
    """A regular file opened for reading; use `fd` (positional reads), never the path, from here on.

    After `close()` the descriptor number may be reused by another file: check `closed` before using `fd`.
    """

    fd: int
    path: Path
    size: int
    device: int
    inode: int
    mtime_ns: int
    closed: bool = False
    mode: int = 0o600
    """The file's permission bits: the rejected-records file written beside it keeps them."""

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                os.close(self.fd)

    def unchanged(self) -> bool:
        """Still open, with the size and modification time it had when it was opened."""
        if self.closed:
            return False
        try:
            st = os.fstat(self.fd)
        except OSError:
            return False
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe_dirs(allowed: Sequence[Path]) -> str:
    if not allowed:
        return "(none)"
    listed = ", ".join(shown(d, 120) for d in allowed[:5])
    return listed + (f" and {len(allowed) - 5} more" if len(allowed) > 5 else "")


def resolve_path(raw: str, allowed: Sequence[Path]) -> Path:
    """The fully resolved path of `raw`, if it names an existing file inside an allowed directory.

    `allowed` must hold directories resolved once, at start (`Settings.effective_allowed_dirs`): they are not
    resolved again here, so replacing one with a symlink later does not move the boundary.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise FileAccessError("the path is empty: pass the path of a .jsonl or .csv file")
    if "\x00" in raw:
        raise FileAccessError(
            "the path contains a NUL character (\\x00), which no file name can hold: pass the plain file path"
        )
    if not allowed:
        raise FileAccessError(
            "no directory is allowed for reading files: set PROLIFIC_MCP_ALLOWED_DIRS (or start the server "
            "with --allow-dir DIR) to the folder that holds your data, or pass the data inline as "
            "content + filename (up to 1 MiB)"
        )
    try:
        candidate = Path(raw.strip()).expanduser()
        if not candidate.is_absolute():
            candidate = allowed[0] / candidate
        roots = [Path(os.path.abspath(root)) for root in allowed]
        # Containment first, on what the path resolves to so far: whether a file exists outside the allowed
        # directories is not for the caller to learn.
        _check_inside(candidate, Path(os.path.realpath(candidate)), roots)
        resolved = Path(os.path.realpath(candidate, strict=True))
    except FileNotFoundError:
        raise FileAccessError(
            f"no file at {shown(candidate)}: check the path (relative paths start at {shown(allowed[0])})"
        ) from None
    except OSError as exc:
        raise FileAccessError(f"cannot resolve {shown(candidate)}: {exc.strerror or exc}") from None
    except (ValueError, RuntimeError):
        # Characters the file system cannot take (lone surrogates, ...), or a home directory that is unknown.
        raise FileAccessError("the path cannot be used as a file name: pass a plain file path") from None
    _check_inside(candidate, resolved, roots)
    return resolved


def _check_inside(candidate: Path, resolved: Path, roots: Sequence[Path]) -> None:
    """Refuse a path that resolves outside every allowed directory (compared by components, not as strings)."""
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        via = "" if resolved == candidate else f" (it resolves to {shown(resolved)})"
        raise FileAccessError(
            f"{shown(candidate)}{via} is outside the allowed directories ({_describe_dirs(roots)}): move the file into "
            "one of them, or add its folder to PROLIFIC_MCP_ALLOWED_DIRS (or --allow-dir) and restart the server"
        )


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_regular_file(resolved: Path, *, max_size: int = S3_SINGLE_PUT_LIMIT) -> OpenedFile:
    """Open a path that `resolve_path` returned: no final symlink, a regular file, not empty, not too large."""
    try:
        before = os.stat(resolved)
    except OSError as exc:
        raise FileAccessError(f"cannot read {shown(resolved)}: {exc.strerror}") from None
    if not stat.S_ISREG(before.st_mode):
        raise FileAccessError(f"{shown(resolved)} is {_kind(before.st_mode)}: pass a regular .jsonl or .csv file")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as exc:
        raise FileAccessError(f"cannot open {shown(resolved)}: {exc.strerror}") from None
    st = os.fstat(fd)
    opened_path = descriptor_path(fd)
    if (
        not stat.S_ISREG(st.st_mode)
        or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino)
        or (opened_path is not None and opened_path != str(resolved))
    ):
        # A file or a directory on its path was swapped (for a link elsewhere, say) after the path was checked.
        os.close(fd)
        raise FileAccessError(f"{shown(resolved)} changed while it was being opened: try again once it is stable")
    if st.st_size == 0:
        os.close(fd)
        raise FileAccessError(f"{shown(resolved)} is empty: there is nothing to upload")
    if st.st_size > max_size:
        os.close(fd)
        raise FileAccessError(
            f"{shown(resolved)} is {st.st_size / 1024**3:.1f} GiB, over the {max_size / 1024**3:.0f} GiB limit of one "
            "upload: split it into several files and upload each"
        )
    return OpenedFile(fd, resolved, st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns, mode=stat.S_IMODE(st.st_mode))


def upload_filename(path_or_name: str, fmt: FileFormat | None = None) -> str:
    """The name sent to upload-url: the base name, `.ndjson` as `.jsonl`, or `<stem>.<format>` when forced."""
    name = os.path.basename(path_or_name.replace("\\", "/")) or "data"
    stem, ext = os.path.splitext(name)
    detected = format_from_filename(name)
    fmt = fmt or detected
    if fmt is None:
        return name
    if ext.lower() == f".{fmt}":
        return name
    return f"{stem or 'data'}.{fmt}"


# ----- inline content -----


def check_inline_filename(filename: str) -> str:
    """The base name of an inline `filename`, or FileAccessError saying what is wrong with it and what to pass."""
    example = "pass a plain name such as 'records.jsonl'"
    if not isinstance(filename, str) or not filename.strip():
        raise FileAccessError(f"filename is empty: {example}")
    if "\x00" in filename:
        raise FileAccessError(f"filename contains a NUL character (\\x00), which no file name can hold: {example}")
    name = os.path.basename(filename.replace("\\", "/")).strip()
    if not name or name in (".", ".."):
        raise FileAccessError(f"filename {shown(filename, 80)!r} names no file: {example}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise FileAccessError(f"filename contains control characters (a line break, a tab...): {example}")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise FileAccessError(f"filename cannot be used as a file name (it is not valid text): {example}") from None
    if len(encoded) > 200:
        raise FileAccessError(f"filename is {len(encoded)} bytes long, over 200: {example}")
    return name


def open_inline(content: str, filename: str, folder: Path) -> OpenedFile:
    """Inline content as an opened file: written to a private temporary file in `folder` (the state directory's
    `inline` folder, created `0700`), opened, and unlinked at once (the descriptor keeps it readable)."""
    name = check_inline_filename(filename)
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError:
        raise FileAccessError(
            "content holds characters that are not valid text (unpaired surrogates): send it as UTF-8 text"
        ) from None
    if len(data) > INLINE_CONTENT_LIMIT:
        raise FileAccessError(
            f"content is {len(data):,} bytes, over the 1 MiB inline limit: save it to a file inside an allowed "
            "directory and pass path instead"
        )
    if not data.strip():
        raise FileAccessError("content is empty: there is nothing to upload")
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix="inline-", suffix="-" + name[-60:], dir=folder)
    except OSError as exc:
        raise FileAccessError(
            f"the inline content could not be stored in {shown(folder)} ({(exc.strerror or str(exc)).lower()}): "
            "set PROLIFIC_MCP_STATE_DIR to a folder you can write to, or pass a path instead"
        ) from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return open_regular_file(Path(temp), max_size=INLINE_CONTENT_LIMIT)
    except OSError as exc:
        raise FileAccessError(
            f"the inline content could not be stored in {shown(folder)} ({write_problem(exc)}): free some space "
            "or set PROLIFIC_MCP_STATE_DIR to another folder, or pass a path instead"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)
