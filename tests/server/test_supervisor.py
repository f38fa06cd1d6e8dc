"""The sandbox supervisor's check before each tool call (docs/performance.md, goal 9): a whole check (the process, the
address file, a connection to the port) passed within CONFIRMED_SECONDS is trusted once the process is seen alive,
so a call costs no worker thread and no connection to the sandbox; a dead process is still caught at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prolific_mcp.sandbox.handshake import SandboxAddress, write_address
from prolific_mcp.server import supervisor
from prolific_mcp.server.supervisor import SandboxSupervisor

pytestmark = pytest.mark.anyio


@pytest.fixture
def port() -> Iterator[int]:
    """A loopback port that takes connections (the sandbox's API port, as far as the check can tell)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def attached(folder: Path, pid: int, port: int) -> SandboxSupervisor:
    """A supervisor attached to a 'sandbox' at `pid` answering on `port`, as the address file names it."""
    address = SandboxAddress(pid, f"http://127.0.0.1:{port}", "http://127.0.0.1:9", "token", "admin")
    folder.mkdir(parents=True, exist_ok=True)
    write_address(folder, address)
    watched = SandboxSupervisor(folder)
    watched.address = address
    return watched


def replacements(watched: SandboxSupervisor, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every time `watched` would attach to or start another sandbox (recorded, not done)."""
    made: list[str] = []

    async def replace() -> None:
        made.append("replace")

    monkeypatch.setattr(watched, "_replace", replace)
    return made


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every connection the supervisor opens to check a port."""
    made: list[str] = []
    real = supervisor._listening

    def counted(url: str) -> bool:
        made.append(url)
        return real(url)

    monkeypatch.setattr(supervisor, "_listening", counted)
    return made


async def test_calls_right_after_a_passed_check_open_no_connection(
    tmp_path: Path, port: int, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = attached(tmp_path / "sandbox", os.getpid(), port)
    replaced = replacements(watched, monkeypatch)
    await watched.ensure_running()
    assert len(connections) == 1, "the first call makes the whole check"
    for _ in range(5):
        await watched.ensure_running()
    assert len(connections) == 1, "calls within CONFIRMED_SECONDS trust it"
    await watched.ensure_running(thorough=True)
    assert len(connections) == 2, "the watchdog always makes the whole check"
    assert replaced == []

    monkeypatch.setattr(supervisor, "CONFIRMED_SECONDS", 0.0)
    await watched.ensure_running()
    await watched.ensure_running()
    assert len(connections) == 4, "past the window, every call checks again"


async def test_a_dead_process_is_caught_by_the_next_call_even_right_after_a_passed_check(
    tmp_path: Path, port: int, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = attached(tmp_path / "sandbox", os.getpid(), port)
    replaced = replacements(watched, monkeypatch)
    await watched.ensure_running()
    assert replaced == []
    # The sandbox's process ends (here: the address now names a process that has exited).
    gone = attached(tmp_path / "sandbox", dead_pid(), port).address
    watched.address = gone
    await watched.ensure_running()
    assert replaced == ["replace"], "found dead at once, though a check passed a moment ago"


async def test_a_port_that_stops_taking_connections_is_caught_by_the_watchdogs_whole_check(
    tmp_path: Path, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the process check cannot see (a live process whose port is closed) the whole check sees: the watchdog
    runs one every WATCHDOG_SECONDS, so calls trust a pass for CONFIRMED_SECONDS at most."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        closing = server.getsockname()[1]
        watched = attached(tmp_path / "sandbox", os.getpid(), closing)
        await watched.ensure_running()
    replaced = replacements(watched, monkeypatch)
    await watched.ensure_running(thorough=True)
    assert replaced == ["replace"]
