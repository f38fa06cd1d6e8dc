"""Who owns an upload in the ledger: a process named `host:pid@start` (the start time where the system tells it,
so a reused pid is not taken for the owner), and whether that process is this one, alive or dead
(docs/architecture.md, The ledger)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

OwnerState = Literal["self", "alive", "dead", "unknown"]


def _start_marker(pid: int) -> str | None:
    """When a process started (clock ticks since boot, Linux), so a reused pid is not taken for the owner."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data.rpartition(b")")[2].split()
    return fields[19].decode() if len(fields) > 19 else None


_OWNERS: dict[int, tuple[str | None, str]] = {}


def _me() -> tuple[str | None, str]:
    """(start marker, owner string) of this process, worked out again after a fork."""
    pid = os.getpid()
    mine = _OWNERS.get(pid)
    if mine is None:
        start = _start_marker(pid)
        mine = _OWNERS[pid] = (start, f"{socket.gethostname()}:{pid}" + (f"@{start}" if start else ""))
    return mine


def current_owner() -> str:
    """This process, as the ledger records who owns an upload: `host:pid@start` (`@start` where it can be told)."""
    return _me()[1]


def owner_state(owner: str | None) -> OwnerState:
    """Whether the process that wrote `owner` is this one, alive, dead, or cannot be told (another host)."""
    if not owner or ":" not in owner:
        return "unknown"
    host, _, rest = owner.rpartition(":")
    pid_text, _, start = rest.partition("@")
    if host != socket.gethostname() or not pid_text.isdigit():
        return "unknown"
    pid = int(pid_text)
    if pid == os.getpid() and (not start or start == _me()[0]):
        return "self"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        pass
    except OSError:
        return "unknown"
    if start:
        now = _start_marker(pid)
        if now is not None and now != start:
            return "dead"  # the pid was reused by another process
    if pid == os.getpid():
        return "dead"  # an earlier process with this pid
    return "alive"
