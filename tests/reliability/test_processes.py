"""The server as a process (matrix T6, issue item 2): nothing but JSON-RPC on stdout; a SIGKILL mid-wait loses
and duplicates nothing; a sandbox child that dies is started again on the same state, and the agent is told.

Linux only where /proc is read (finding a process's children): the project supports Linux and macOS, and CI is Linux.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream
from mcp import Client
from mcp.client.stdio import stdio_client

from prolific_mcp.sandbox import SandboxProcess, SandboxProcessError
from prolific_mcp.server.app import build_server
from tests.reliability.conftest import stdio_params
from tests.server.conftest import SCHEMA_FIELDS, call, make_settings, ok, records, text_of, write_jsonl

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find child processes (Linux)"),
]


# --- processes -------------------------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def children(parent: int, needle: str) -> list[int]:
    """Live child processes of `parent` whose command line contains `needle`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None and info[0] == parent and info[1] != "Z" and needle in " ".join(_cmdline(int(entry))):
                found.append(int(entry))
    return found


async def wait_for(predicate: Any, what: str) -> Any:
    """Poll until `predicate()` is truthy (the caller's fail_after bounds it); returns its value."""
    while not (value := predicate()):
        await anyio.sleep(0.05)
    assert value, what
    return value


def gone(pid: int) -> bool:
    """The process has exited: reaped, or a zombie whose threads have all ended (until then the kernel shows the
    leader as a zombie while the others still hold its sockets, and its parent cannot reap it yet)."""
    info = _stat(pid)
    if info is None:
        return True
    try:
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return True
    return info[1] == "Z" and threads <= 1


def sandbox_ports(log: Path) -> list[int]:
    """The API port of each sandbox start recorded in its log, oldest first."""
    return [int(m) for m in re.findall(r"sandbox ready at http://127\.0\.0\.1:(\d+)", log.read_text())]


# --- T6: stdout carries JSON-RPC only -------------------------------------------------------------------------------

NOISY_SERVER = """
import logging, sys, warnings
from prolific_mcp.server import app

real_build = app.build_server

def noisy_build(*args, **kwargs):
    server = real_build(*args, **kwargs)
    logging.getLogger().setLevel(logging.DEBUG)
    for name in ("httpx2", "httpcore2", "mcp", "asyncio", "prolific_mcp"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    warnings.warn("a forced warning, which belongs on stderr", UserWarning)
    return server

app.build_server = noisy_build
from prolific_mcp.cli import main
sys.exit(main(sys.argv[1:]))
"""


async def test_stdout_is_json_rpc_only_with_verbose_logging_and_warnings(tmp_path: Path, data_dir: Path) -> None:
    """T6: with httpx and everything else logging at DEBUG and warnings forced, every stdout line is JSON-RPC;
    the logs and the warning went to stderr."""
    write_jsonl(data_dir / "r.jsonl", records(5, bad={1: {"photo": "nope"}}))
    errors = tmp_path / "stderr.txt"
    lines: list[str] = []
    responses: dict[int, dict[str, Any]] = {}
    with errors.open("w") as err_file, anyio.fail_after(90):
        env = {**os.environ, **(stdio_params(tmp_path, data_dir).env or {}), "PYTHONWARNINGS": "always"}
        async with await anyio.open_process(
            [sys.executable, "-c", NOISY_SERVER], env=env, cwd=str(data_dir), stderr=err_file
        ) as process:
            assert process.stdin is not None and process.stdout is not None
            arrived: dict[int, anyio.Event] = {}

            async def read() -> None:
                assert process.stdout is not None
                buffer = ""
                async for chunk in TextReceiveStream(process.stdout):
                    buffer += chunk
                    *complete, buffer = buffer.split("\n")
                    for line in complete:
                        lines.append(line)
                        message = json.loads(line)
                        if "id" in message and ("result" in message or "error" in message):
                            responses[message["id"]] = message
                            arrived.setdefault(message["id"], anyio.Event()).set()
                if buffer:
                    lines.append(buffer)

            async def request(number: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
                assert process.stdin is not None
                body = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
                await process.stdin.send((json.dumps(body) + "\n").encode())
                await arrived.setdefault(number, anyio.Event()).wait()
                return responses[number]

            async def notify(method: str) -> None:
                assert process.stdin is not None
                await process.stdin.send((json.dumps({"jsonrpc": "2.0", "method": method}) + "\n").encode())

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                init = await request(
                    1,
                    "initialize",
                    {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "stdout-check", "version": "1"},
                    },
                )
                assert "result" in init
                await notify("notifications/initialized")
                await request(2, "tools/list", {})
                created = await request(
                    3, "tools/call", {"name": "create_dataset", "arguments": {"name": "T6", "fields": SCHEMA_FIELDS}}
                )
                dataset_id = created["result"]["structuredContent"]["id"]
                uploaded = await request(
                    4,
                    "tools/call",
                    {
                        "name": "upload_file",
                        "arguments": {"dataset_id": dataset_id, "path": "r.jsonl"},
                        "_meta": {"progressToken": "p1"},
                    },
                )
                assert uploaded["result"]["structuredContent"]["status"] == "partial"
                failed = await request(5, "tools/call", {"name": "get_dataset", "arguments": {"dataset_id": "../x"}})
                assert failed["result"]["isError"] is True
                await process.stdin.aclose()  # the client goes away: the server exits
                await process.wait()
    assert lines, "the server said nothing on stdout"
    for line in lines:
        message = json.loads(line)  # every line parses...
        assert message.get("jsonrpc") == "2.0", line  # ...as JSON-RPC 2.0
    assert any(json.loads(line).get("method") == "notifications/progress" for line in lines)
    stderr = errors.read_text()
    assert "HTTP Request:" in stderr, "httpx logging was on, and went to stderr"
    assert "a forced warning" in stderr
    assert "X-Amz-Signature=REDACTED" in stderr and not re.search(r"X-Amz-Signature=(?!REDACTED)", stderr)


# --- issue item 2: SIGKILL in the middle of an upload's wait, then start again ---------------------------------------


async def test_sigkill_mid_wait_then_restart_resumes_the_same_import(tmp_path: Path, data_dir: Path) -> None:
    """The server is SIGKILLed while it waits on an import; its sandbox child exits with it. Started again on the
    same state directory, `upload_file` with the same file resumes the same import and `get_import_status`
    finishes it: one PUT, one import, every record counted once."""
    count = 20_000
    write_jsonl(data_dir / "big.jsonl", records(count))
    params = stdio_params(tmp_path, data_dir)
    state = tmp_path / "state" / "sandbox"
    progress: list[tuple[float, str]] = []
    killed: dict[str, int] = {}
    errlog = (tmp_path / "stderr-1.txt").open("w")
    with anyio.fail_after(120):
        with contextlib.suppress(Exception):  # the first session dies with its server
            async with Client(stdio_client(params, errlog=errlog)) as client:
                dataset_id = await ok_id(client)
                (server_pid,) = [p for p in children(os.getpid(), "") if _cmdline(p)[1:3] == ["-m", "prolific_mcp"]]
                sandbox_pid = await wait_for(lambda: children(server_pid, "prolific_mcp.sandbox"), "sandbox child")
                sandbox_pid = sandbox_pid[0]
                uploaded_event = anyio.Event()

                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    progress.append((value, message or ""))
                    up = value >= 50 and not (message or "").startswith("uploading")
                    if up and not killed:  # the file is up (the ledger says so); the server waits on the import
                        killed.update(server=server_pid, sandbox=sandbox_pid)
                        os.kill(server_pid, signal.SIGKILL)
                        uploaded_event.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(
                        lambda: client.call_tool(
                            "upload_file",
                            {"dataset_id": dataset_id, "path": "big.jsonl", "wait_seconds": 60},
                            progress_callback=on_progress,
                        )
                    )
                    await uploaded_event.wait()
                    await wait_for(lambda: gone(server_pid), "the server to die")
                    tg.cancel_scope.cancel()
        errlog.close()
        assert killed, "the upload never reached its wait"
        assert max(v for v, _ in progress) < 100, "killed before the import finished, as the test intends"
        await wait_for(lambda: gone(killed["sandbox"]), "the sandbox child to exit with its server")
        ledger = sqlite3.connect(state / "ledger.sqlite3")
        ((import_id, ledger_state),) = ledger.execute("SELECT import_id, state FROM uploads").fetchall()
        ledger.close()
        assert ledger_state == "uploaded", "the kill came after the PUT and before the outcome"

        async with Client(stdio_client(params, errlog=(tmp_path / "stderr-2.txt").open("w"))) as client:
            resumed = await ok(
                client, "upload_file", {"dataset_id": dataset_id, "path": "big.jsonl", "wait_seconds": 0}
            )
            data = resumed.structured_content or {}
            assert data["import_id"] == import_id, "the same import is resumed, not a new upload"
            assert data["finished"] is False
            assert data["next_step"].startswith("get_import_status(") and import_id in data["next_step"]
            finished = await ok(
                client,
                "get_import_status",
                {"dataset_id": dataset_id, "import_id": import_id, "wait_seconds": 60},
            )
            done = finished.structured_content or {}
            assert (done["status"], done["accepted_count"], done["rejected_count"]) == ("complete", count, 0)
            assert done["total_datapoint_count"] == count
    db = sqlite3.connect(state / "server" / "sandbox.sqlite3")
    uploads = db.execute("SELECT id, status, object_size FROM uploads").fetchall()
    (total,) = db.execute("SELECT total FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
    db.close()
    assert [(u[0], u[1]) for u in uploads] == [(import_id, "complete")], "one import, never uploaded twice"
    assert total == count, "nothing lost, nothing counted twice"
    ledger = sqlite3.connect(state / "ledger.sqlite3")
    assert ledger.execute("SELECT import_id, state FROM uploads").fetchall() == [(import_id, "complete")]
    ledger.close()


async def ok_id(client: Client) -> str:
    created = await ok(client, "create_dataset", {"name": "Restart", "fields": SCHEMA_FIELDS, "strict": False})
    return str((created.structured_content or {})["id"])


# --- issue item 2: the sandbox child dies while the server runs ------------------------------------------------------


async def test_a_dead_sandbox_child_is_started_again_on_the_same_state(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox child is killed twice under a running server: each time the server starts it again on the same
    state folder (datasets and imports still there) and the next tool result says so, once. The second time its
    old port is taken when it starts again, so it comes back on another port and the API client follows it."""
    write_jsonl(data_dir / "r.jsonl", records(6))
    server = build_server(make_settings(tmp_path, data_dir))
    log = tmp_path / "state" / "sandbox" / "server" / "sandbox.log"
    marker = "had stopped"
    squat: list[socket.socket] = []
    broken: list[str] = []
    real_start = SandboxProcess.start.__func__  # type: ignore[attr-defined]

    def start(cls: type[SandboxProcess], state_dir: Path | None = None, **options: Any) -> SandboxProcess:
        if broken:
            raise SandboxProcessError(broken[0])
        if squat and options.get("port") and squat[0].fileno() >= 0 and squat[0].getsockname()[1] == 0:
            # the hook: someone else has taken the old port by the time the sandbox starts again
            squat[0].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squat[0].bind(("127.0.0.1", options["port"]))
            squat[0].listen(1)
        return real_start(cls, state_dir, **options)  # type: ignore[no-any-return]

    monkeypatch.setattr(SandboxProcess, "start", classmethod(start))
    with anyio.fail_after(90):
        async with Client(server) as client:
            dataset_id = await ok_id(client)
            uploaded = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
            assert (uploaded.structured_content or {})["status"] == "complete"
            state_dir = str(tmp_path / "state")

            def child() -> list[int]:
                return [p for p in children(os.getpid(), "prolific_mcp.sandbox") if state_dir in " ".join(_cmdline(p))]

            # 1. killed: back on the same port
            (first,) = await wait_for(child, "the sandbox child")
            os.kill(first, signal.SIGKILL)
            await wait_for(lambda: gone(first), "the child to die")
            shown = await ok(client, "get_dataset", {"dataset_id": dataset_id})
            text = text_of(shown)
            assert text.startswith("SANDBOX: nothing here reaches Prolific.\nNote: the local sandbox"), text
            assert marker in text and "uploads under way carry on" in text, (text, log.read_text()[-2000:])
            assert (shown.structured_content or {})["total_datapoint_count"] == 6, "same state: the data is there"
            quiet = await ok(client, "list_workspaces", {})
            assert marker not in text_of(quiet), "said once"
            ports = sandbox_ports(log)
            assert len(ports) == 2 and ports[0] == ports[1], ports

            # 2. killed, and its port taken meanwhile: back on another port, and the client follows
            (second,) = await wait_for(child, "the restarted child")
            assert second != first
            squat.append(socket.socket())
            try:
                os.kill(second, signal.SIGKILL)
                await wait_for(lambda: gone(second), "the child to die")
                shown = await ok(client, "get_dataset", {"dataset_id": dataset_id})
            finally:
                squat.pop().close()
            assert marker in text_of(shown) and "needs upload_file again" in text_of(shown), text_of(shown)
            assert (shown.structured_content or {})["total_datapoint_count"] == 6
            assert sandbox_ports(log)[-1] != ports[-1]
            again = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
            assert (again.structured_content or {})["from_ledger"] is True

            # 3. killed, and it cannot start: calls say so (not a connection error), then it comes back
            (third,) = await wait_for(child, "the child on its new port")
            broken.append("the disk is full")
            os.kill(third, signal.SIGKILL)
            await wait_for(lambda: gone(third), "the child to die")
            down = await call(client, "get_dataset", {"dataset_id": dataset_id})
            assert down.is_error and "could not be started again (the disk is full)" in text_of(down)
            assert text_of(down).count("could not be started again") == 1
            broken.clear()
            while (back := await call(client, "get_dataset", {"dataset_id": dataset_id})).is_error:
                await anyio.sleep(0.2)  # the next attempt comes after a short backoff
            assert marker in text_of(back)
            assert (back.structured_content or {})["total_datapoint_count"] == 6
