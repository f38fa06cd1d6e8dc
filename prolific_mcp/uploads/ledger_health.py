"""The ledger file's integrity, permissions and errors (docs/architecture.md, The ledger): checked at open, a
damaged file moved aside with a timestamp, the state folder's files owner-only, and what `doctor` reports.
Nothing here opens the ledger for writing."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

if sys.platform != "win32":
    import fcntl

from prolific_mcp.settings import StateDirError, shown_path

DB_FILE_MODE: Final = 0o600
MOVED_ASIDE_MARK: Final = ".damaged-"


@dataclass(frozen=True, slots=True)
class Recovery:
    """A damaged ledger found at open: what was wrong, where it was moved, and when."""

    problem: str
    moved_to: Path | None
    at: float

    @property
    def sentence(self) -> str:
        where = f" and was moved aside to {shown_path(self.moved_to)}" if self.moved_to is not None else ""
        return (
            f"The local upload ledger was damaged ({self.problem}){where}; a fresh ledger was started, so uploads "
            "made before are not remembered: uploading the same file again would import it again (check the "
            "dataset with get_dataset first)."
        )


def damage(path: Path, busy_timeout: float = 10.0) -> str | None:
    """What is wrong with the ledger file at `path`, or None when it is sound or absent (read only)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise state_dir_error(path, exc) from None
    if stat.S_ISDIR(st.st_mode):
        return "a directory is where the ledger file should be"
    if not stat.S_ISREG(st.st_mode):
        return "something other than a file is where the ledger file should be"
    if st.st_size == 0:
        return None
    try:
        db = sqlite3.connect(f"{Path(os.path.abspath(path)).as_uri()}?mode=ro", uri=True, timeout=busy_timeout)
    except sqlite3.OperationalError as exc:
        raise state_dir_error(path, exc) from None
    try:
        results = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.OperationalError as exc:
        if _is_damage(exc):
            return str(exc)
        raise state_dir_error(path, exc) from None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        return str(exc)
    finally:
        db.close()
    if results == ["ok"]:
        return None
    first = results[0] if results else "no answer"
    return f"the integrity check failed: {first[:120]}"


def _is_damage(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


def move_aside(path: Path, now: float) -> Path | None:
    """Rename a damaged ledger (and its -wal and -shm files) with a timestamp suffix; the new name."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(100):
        suffix = MOVED_ASIDE_MARK + stamp + (f".{n}" if n else "")
        target = path.with_name(path.name + suffix)
        if not os.path.lexists(target):
            break
    else:  # pragma: no cover - a hundred damaged ledgers in one second
        suffix = MOVED_ASIDE_MARK + stamp + f".{os.getpid()}"
        target = path.with_name(path.name + suffix)
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None  # another process moved it first
    except OSError as exc:
        raise state_dir_error(path, exc) from None
    for extra in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + extra)
        with contextlib.suppress(FileNotFoundError):
            os.rename(side, path.with_name(path.name + extra + suffix))
    return target


def moved_aside(path: Path) -> list[Path]:
    """Damaged ledgers moved aside beside `path`, oldest first."""
    try:
        return sorted(path.parent.glob(path.name + MOVED_ASIDE_MARK + "*"))
    except OSError:
        return []


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes while the ledger is checked (and perhaps replaced) at open."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), DB_FILE_MODE)
    except OSError as exc:
        raise state_dir_error(path, exc) from None
    try:
        if sys.platform != "win32":
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def make_private(path: Path) -> None:
    """The ledger's files readable by their owner only (SQLite gives -wal and -shm the database's mode)."""
    for extra in ("", "-wal", "-shm", ".lock"):
        with contextlib.suppress(OSError):
            os.chmod(path.with_name(path.name + extra), DB_FILE_MODE)


def state_dir_error(path: Path, exc: BaseException) -> StateDirError:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StateDirError(
            f"the upload ledger in {shown_path(path.parent)} is busy (another server process holds it): call the "
            "tool again in a moment"
        )
    if isinstance(exc, sqlite3.OperationalError) and ("full" in text or "i/o" in text):
        fix = "free some space on that disk (or check it), or set PROLIFIC_MCP_STATE_DIR to a folder on another disk"
    else:
        fix = "make it writable, or set PROLIFIC_MCP_STATE_DIR to a folder you can write to"
    return StateDirError(
        f"the upload ledger in {shown_path(path.parent)} could not be used ({str(reason).lower()}): {fix}, "
        "then call the tool again (restart the server if you changed PROLIFIC_MCP_STATE_DIR)"
    )


LedgerHealth = Literal["ok", "missing", "damaged", "unusable"]


def health(path: Path) -> tuple[LedgerHealth, str]:
    """For `doctor`: the state of the ledger file at `path` and one sentence about it (nothing is changed)."""
    earlier = moved_aside(path)
    note = (
        f" ({len(earlier)} damaged ledger{'s were' if len(earlier) > 1 else ' was'} moved aside earlier, the "
        f"latest as {earlier[-1].name})"
        if earlier
        else ""
    )
    try:
        problem = damage(path)
    except StateDirError as exc:
        return "unusable", str(exc)
    if problem is not None:
        return "damaged", (
            f"the upload ledger {shown_path(path)} is damaged ({problem}): the server moves it aside and starts a "
            "fresh one when it starts" + note
        )
    if not path.exists():
        return "missing", f"no upload ledger yet at {shown_path(path)} (the server creates it)" + note
    return "ok", f"the upload ledger {shown_path(path)} is sound" + note
