"""The server as a process: it ends cleanly on SIGINT and SIGTERM, says at start what is in force, logs with time
and level, and runs with a configuration error so the client can show it (docs/architecture.md (Transports)).

Real subprocesses (`python -m prolific_mcp`), stdio and --http.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import stdio_client

from prolific_mcp import __version__
from tests.reliability.conftest import stdio_params
from tests.server.conftest import text_of

STOP_BOUND = 10.0
"""Generous bound for 'the process ended' (the server's own limit is 2 s)."""
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def server_env(tmp_path: Path, data_dir: Path) -> dict[str, str]:
    return dict(stdio_params(tmp_path, data_dir).env or {})


class Server:
    """`python -m prolific_mcp ARGS` with stdin kept open, its stderr read line by line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prolific_mcp", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            text=True,
        )
        self.lines: list[str] = []

    def read_until(self, needle: str) -> str:
        """Read stderr until a line containing `needle` (the caller's process bound applies)."""
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            if needle in line:
                return line
        raise AssertionError(f"the server ended before saying {needle!r}: {self.lines}")

    def finish(self) -> tuple[int, list[str]]:
        """Wait (bounded) for the exit; its status and every stderr line."""
        try:
            code = self.process.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_BOUND)
            raise AssertionError(f"the server did not stop within {STOP_BOUND:g} s: {self.lines}") from None
        assert self.process.stderr is not None
        self.lines += self.process.stderr.read().splitlines()
        return code, self.lines

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_BOUND)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def check_clean(lines: list[str]) -> None:
    """No traceback, and every log line has its time and level (the start line and config notes are plain text)."""
    text = "\n".join(lines)
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    logged = [line for line in lines[1:] if line and not line.startswith(("prolific-datasets-mcp", "  "))]
    assert logged, "something was logged"
    for line in logged:
        assert LOG_LINE.match(line), f"a log line without time and level: {line!r}"


@pytest.mark.parametrize("http", [False, True], ids=["stdio", "http"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_the_server_cleanly_while_stdin_stays_open(
    http: bool, signum: signal.Signals, server_env: dict[str, str], data_dir: Path, servers: list[Server]
) -> None:
    args = ["--http", "--port", "0", "--no-auth"] if http else []
    server = Server(args, server_env, data_dir)
    servers.append(server)
    start = server.read_until("prolific-datasets-mcp")
    assert start.startswith(f"prolific-datasets-mcp {__version__} ({'HTTP' if http else 'stdio'}")
    for part in ("mode sandbox", "API the local sandbox", "state directory ", f"allowed directories {data_dir}"):
        assert part in start, start
    server.read_until("started the shared sandbox")  # serving, its services up
    server.process.send_signal(signum)
    started = time.monotonic()
    code, lines = server.finish()
    assert code == 0, lines
    assert time.monotonic() - started < STOP_BOUND
    assert any(f"{signum.name} received: stopping" in line for line in lines)
    check_clean(lines)


def test_sigint_then_closing_stdin_is_clean(server_env: dict[str, str], data_dir: Path, servers: list[Server]) -> None:
    server = Server([], server_env, data_dir)
    servers.append(server)
    server.read_until("started the shared sandbox")
    assert server.process.stdin is not None
    server.process.send_signal(signal.SIGINT)
    server.process.stdin.close()
    code, lines = server.finish()
    assert code == 0, lines
    check_clean(lines)


def test_stdin_closed_ends_the_server_with_status_0(
    server_env: dict[str, str], data_dir: Path, servers: list[Server]
) -> None:
    server = Server([], server_env, data_dir)
    servers.append(server)
    server.read_until("started the shared sandbox")
    assert server.process.stdin is not None
    server.process.stdin.close()
    code, lines = server.finish()
    assert code == 0, lines
    check_clean(lines)


@pytest.mark.anyio
async def test_a_configuration_error_is_served_not_fatal(tmp_path: Path, data_dir: Path) -> None:
    """PROLIFIC_URL set to a remote API without a token: the server starts, lists its tools, and every call answers
    with the error and how to fix it; stderr says the same."""
    params = stdio_params(tmp_path, data_dir, PROLIFIC_MODE="auto", PROLIFIC_URL="https://api.example.com")
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"suggest_schema", "upload_file", "list_workspaces"} <= names
            for tool, arguments in (("suggest_schema", {"path": "x.jsonl"}), ("list_workspaces", {})):
                result = await client.call_tool(tool, arguments)
                assert result.is_error
                text = text_of(result)
                assert "PROLIFIC_URL" in text and "PROLIFIC_TOKEN" in text, text
                assert "restart the server" in text and "Traceback" not in text, text
    stderr = errors.read_text()
    assert "configuration error: PROLIFIC_URL" in stderr and "fix the setting" in stderr, stderr
    assert "not configured" in stderr and "Traceback" not in stderr
