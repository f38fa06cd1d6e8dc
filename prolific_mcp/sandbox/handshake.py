"""What the sandbox command and the processes that start or use it agree on.

- The ready line it prints and the token variables it reads.
- For the shared sandbox of the MCP servers on one state folder (docs/sandbox.md (One sandbox, many servers)), the
  files in that folder: `address.json` (where it answers, its pid and tokens; written by the sandbox once ready,
  removed when it stops), `token` (the random API token every sandbox started there accepts), `users.lock` (each
  server holds a shared lock on it while it runs; the sandbox exits once nobody does) and `start.lock` (held by
  the one server that starts a sandbox, so two never start one at once).

Kept apart from the emulator so that starting the child (`process.py`) does not import the whole sandbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

TOKEN_ENV: Final = "PROLIFIC_SANDBOX_TOKEN"  # noqa: S105 (the variable's name, not a secret)
ADMIN_TOKEN_ENV: Final = "PROLIFIC_SANDBOX_ADMIN_TOKEN"  # noqa: S105 (the variable's name, not a secret)
READY_PREFIX: Final = "Prolific sandbox ready at "
TEMP_NOTE: Final = "a fresh temporary folder, deleted on exit"
READY_LINE: Final = re.compile(
    r"^Prolific sandbox ready at (?P<url>http://\S+) \(fake S3 at (?P<s3_url>http://[^,\s]+), "
    r"state in (?P<state_dir>.+?)(?:, " + re.escape(TEMP_NOTE) + r")?; admin token (?P<admin>\S+|\(as configured\))\)$"
)
"""The ready line; `admin` is the admin token, or `(as configured)` when it was given to the sandbox."""
CONFIGURED_ADMIN: Final = "(as configured)"

ADDRESS_FILENAME: Final = "address.json"
TOKEN_FILENAME: Final = "token"  # noqa: S105 (a file name)
USERS_LOCK: Final = "users.lock"
START_LOCK: Final = "start.lock"


@dataclass(frozen=True, slots=True)
class SandboxAddress:
    """Where a shared sandbox answers, and how to talk to it."""

    pid: int
    url: str
    s3_url: str
    token: str
    admin_token: str


def read_address(folder: Path) -> SandboxAddress | None:
    """The address a sandbox wrote in `folder`, or None (none written, or unreadable: then it is started anew)."""
    try:
        data = json.loads((folder / ADDRESS_FILENAME).read_text(encoding="utf-8"))
        return SandboxAddress(**{k: data[k] for k in SandboxAddress.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_address(folder: Path, address: SandboxAddress) -> None:
    """Write the address atomically, readable by this user only (it holds the tokens)."""
    temporary = folder / f".{ADDRESS_FILENAME}.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(asdict(address), out)
    os.replace(temporary, folder / ADDRESS_FILENAME)


def remove_address(folder: Path, pid: int) -> None:
    """Remove the address file if it is still this sandbox's."""
    found = read_address(folder)
    if found is not None and found.pid == pid:
        with contextlib.suppress(OSError):
            (folder / ADDRESS_FILENAME).unlink()


def shared_token(folder: Path) -> str:
    """The random API token of the sandboxes started in `folder`: made once, kept (mode 0600) for later starts."""
    path = folder / TOKEN_FILENAME
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secrets.token_urlsafe(32))
    token = path.read_text(encoding="utf-8").strip()
    if not token:  # a start that died between creating and writing the file
        path.unlink()
        return shared_token(folder)
    return token


def open_lock(path: Path) -> int:
    """A descriptor on a lock file (created if needed, mode 0600), for `fcntl.flock`."""
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def lock_within(fd: int, seconds: float) -> bool:
    """An exclusive `flock` on `fd`, tried for up to `seconds` (0: once); False if it stayed taken."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def try_lock(path: Path) -> int | None:
    """An exclusive lock on `path` if it can be had at once (its descriptor; closing it releases), else None."""
    fd = open_lock(path)
    if lock_within(fd, 0):
        return fd
    os.close(fd)
    return None
