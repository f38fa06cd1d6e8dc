"""Many server processes on one state directory share one sandbox (docs/sandbox.md (One sandbox, many servers)).

Three real stdio servers, sandbox mode, one state directory: the first starts the sandbox, the others attach to it
and see its datasets; the first is killed with SIGKILL in the middle of an upload, and every call of the other two
still succeeds; the sandbox outlives the server that started it, is started again by the others when it is killed,
and exits once no server is left.

Linux only (reads /proc, as test_processes.py does).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult

from prolific_mcp.doctor import run_doctor
from prolific_mcp.sandbox import Sandbox
from prolific_mcp.server.app import build_server
from tests.reliability.conftest import stdio_params
from tests.reliability.test_processes import _cmdline, children, gone, wait_for
from tests.server.conftest import SCHEMA_FIELDS, make_settings, records, text_of, write_jsonl

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find processes (Linux)"),
]

ROUNDS = 3
"""Rounds of calls each surviving server makes before and after each kill (bounded)."""


def sandboxes(folder: Path) -> list[int]:
    """Live sandbox processes serving `folder` (whoever their parent is now)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and not gone(int(entry)):
            command = " ".join(_cmdline(int(entry)))
            if "prolific_mcp.sandbox" in command and str(folder) in command:
                found.append(int(entry))
    return found


def address_pid(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "address.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def logs(tmp_path: Path) -> str:
    """The end of every server's stderr, for failure messages."""
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(tmp_path.glob("stderr-*.txt")))


class Calls:
    """Every call a surviving server made, so the test can require all of them to have succeeded."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str, CallToolResult]] = []

    async def __call__(self, who: str, client: Client, tool: str, args: dict[str, Any]) -> CallToolResult:
        with anyio.fail_after(60):
            result = await client.call_tool(tool, args)
        self.made.append((who, tool, result))
        return result

    def failures(self) -> list[str]:
        return [f"{who} {tool}: {text_of(r)[:500]}" for who, tool, r in self.made if r.is_error]


async def rounds(calls: Calls, who: str, client: Client, count: int) -> None:
    """Create a dataset, upload a small file to it, read it back, list the datasets; `count` times."""
    for n in range(count):
        created = await calls(who, client, "create_dataset", {"name": f"{who} {n}", "fields": SCHEMA_FIELDS})
        if created.is_error:
            continue
        dataset_id = (created.structured_content or {})["id"]
        await calls(who, client, "upload_file", {"dataset_id": dataset_id, "path": "small.jsonl", "wait_seconds": 30})
        await calls(who, client, "get_dataset", {"dataset_id": dataset_id})
        await calls(who, client, "list_datasets", {})


async def test_three_servers_share_one_sandbox_and_outlive_a_killed_one(tmp_path: Path, data_dir: Path) -> None:
    write_jsonl(data_dir / "big.jsonl", records(20_000))
    write_jsonl(data_dir / "small.jsonl", records(6, bad={2: {"photo": "nope"}}))
    params = stdio_params(tmp_path, data_dir)
    folder = (tmp_path / "state" / "sandbox" / "server").resolve()
    calls = Calls()
    servers_before = set(children(os.getpid(), "prolific_mcp"))

    def new_server() -> int:
        (pid,) = [
            p
            for p in children(os.getpid(), "")
            if _cmdline(p)[1:3] == ["-m", "prolific_mcp"] and p not in servers_before
        ]
        servers_before.add(pid)
        return pid

    with anyio.fail_after(240):
        first = Client(stdio_client(params, errlog=(tmp_path / "stderr-1.txt").open("w")))
        await first.__aenter__()
        try:
            first_pid = new_server()
            created = await first.call_tool("create_dataset", {"name": "shared", "fields": SCHEMA_FIELDS})
            assert not created.is_error, text_of(created)
            shared_id = (created.structured_content or {})["id"]
            sandbox_pid = address_pid(folder)
            assert sandbox_pid is not None, "the sandbox wrote its address in the state directory"
            assert children(first_pid, "prolific_mcp.sandbox") == [sandbox_pid], "the first server started it"

            async with AsyncExitStack() as stack:
                others: dict[str, Client] = {}
                for name in ("second", "third"):
                    errlog = stack.enter_context((tmp_path / f"stderr-{name}.txt").open("w"))
                    others[name] = await stack.enter_async_context(Client(stdio_client(params, errlog=errlog)))
                    new_server()
                # They attached: the first server's dataset is there, and there is still one sandbox.
                for name, client in others.items():
                    seen = await calls(name, client, "get_dataset", {"dataset_id": shared_id})
                    assert not seen.is_error, text_of(seen)
                assert sandboxes(folder) == [sandbox_pid]

                # The first server is killed in the middle of its upload, while the others keep calling.
                killed = anyio.Event()

                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    if not killed.is_set() and value >= 10:
                        os.kill(first_pid, signal.SIGKILL)
                        killed.set()

                async def upload_then_die() -> None:
                    with contextlib.suppress(Exception), anyio.move_on_after(90):  # its server dies under it
                        await first.call_tool(
                            "upload_file",
                            {"dataset_id": shared_id, "path": "big.jsonl", "wait_seconds": 60},
                            progress_callback=on_progress,
                        )
                    if not killed.is_set():  # the upload was quicker than the progress it reported
                        os.kill(first_pid, signal.SIGKILL)
                        killed.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(upload_then_die)
                    for name, client in others.items():
                        tg.start_soon(rounds, calls, name, client, ROUNDS)
                    await killed.wait()
                    await wait_for(lambda: gone(first_pid), "the first server to die")
                async with anyio.create_task_group() as tg:  # and more calls, all after the kill
                    for name, client in others.items():
                        tg.start_soon(rounds, calls, name, client, ROUNDS)
                assert calls.failures() == []
                assert not gone(sandbox_pid), "the sandbox outlived the server that started it"
                assert sandboxes(folder) == [sandbox_pid], (sandbox_pid, address_pid(folder), logs(tmp_path))

                # The sandbox itself is killed: the next calls start it again (one of them) or attach to it.
                os.kill(sandbox_pid, signal.SIGKILL)
                await wait_for(lambda: gone(sandbox_pid), "the sandbox to die")
                for name, client in others.items():
                    back = await calls(name, client, "get_dataset", {"dataset_id": shared_id})
                    assert not back.is_error, text_of(back)
                    assert "had stopped" in text_of(back), (text_of(back), logs(tmp_path))
                async with anyio.create_task_group() as tg:
                    for name, client in others.items():
                        tg.start_soon(rounds, calls, name, client, 1)
                assert calls.failures() == []
                restarted = address_pid(folder)
                assert restarted is not None and restarted != sandbox_pid
                assert sandboxes(folder) == [restarted], ("one sandbox, shared again", logs(tmp_path))
                # doctor names it
                out = io.StringIO()
                env = dict(params.env or {})
                await anyio.to_thread.run_sync(lambda: run_doctor(environ=env, cwd=data_dir, out=out))
                url = json.loads((folder / "address.json").read_text())["url"]
                assert f"share the one at {url}" in out.getvalue(), out.getvalue()
        finally:
            with contextlib.suppress(Exception):  # its server was killed
                await first.__aexit__(None, None, None)
        # No server left: the sandbox exits by itself.
        await wait_for(lambda: not sandboxes(folder), "the sandbox to exit once no server uses it")
    made = len(calls.made)
    assert made >= 2 * (2 * ROUNDS * 4 + 1 + 1 + 4), f"every round was made ({made} calls)"


async def test_three_servers_in_prolific_mode_share_one_state_directory(tmp_path: Path, data_dir: Path) -> None:
    """Prolific mode (a sandbox given by URL stands in for Prolific): three servers on one state directory, all
    calling at once, every call succeeds and each sees the datasets the others created (through the shared ledger)."""
    write_jsonl(data_dir / "small.jsonl", records(6, bad={2: {"photo": "nope"}}))
    calls = Calls()
    with Sandbox.start(state_dir=tmp_path / "prolific", pace="fast", token="tok-shared") as sbx:
        params = stdio_params(
            tmp_path,
            data_dir,
            PROLIFIC_MODE="prolific",
            PROLIFIC_TOKEN="tok-shared",
            PROLIFIC_URL=sbx.url,
            PROLIFIC_WORKSPACE_ID=sbx.workspace_id,  # the stand-in has two workspaces, as an account may
        )
        with anyio.fail_after(180):
            async with AsyncExitStack() as stack:
                clients: dict[str, Client] = {}
                for name in ("one", "two", "three"):
                    errlog = stack.enter_context((tmp_path / f"stderr-{name}.txt").open("w"))
                    clients[name] = await stack.enter_async_context(Client(stdio_client(params, errlog=errlog)))
                async with anyio.create_task_group() as tg:
                    for name, client in clients.items():
                        tg.start_soon(rounds, calls, name, client, ROUNDS)
                listed = await calls("one", clients["one"], "list_datasets", {})
    assert calls.failures() == []
    assert len(calls.made) == 3 * ROUNDS * 4 + 1
    names = {d["name"] for d in (listed.structured_content or {})["datasets"]}
    assert {f"{who} {n}" for who in ("one", "two", "three") for n in range(ROUNDS)} <= names


async def test_a_sandbox_that_stops_answering_is_replaced(tmp_path: Path, data_dir: Path) -> None:
    """The sandbox is frozen (SIGSTOP: its process lives, nothing answers). The server's pings notice, it ends it and
    starts another on the same state; the next call works and says so."""
    server = build_server(make_settings(tmp_path, data_dir))
    folder = (tmp_path / "state" / "sandbox" / "server").resolve()
    with anyio.fail_after(120):
        async with Client(server) as client:
            created = await client.call_tool("create_dataset", {"name": "frozen", "fields": SCHEMA_FIELDS})
            assert not created.is_error, text_of(created)
            dataset_id = (created.structured_content or {})["id"]
            frozen = address_pid(folder)
            assert frozen is not None
            os.kill(frozen, signal.SIGSTOP)
            try:
                replaced = await wait_for(lambda: (p := address_pid(folder)) != frozen and p, "a new sandbox")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(frozen, signal.SIGCONT)
            await wait_for(lambda: gone(frozen), "the frozen sandbox to be ended")
            back = await client.call_tool("get_dataset", {"dataset_id": dataset_id})
            assert not back.is_error, text_of(back)
            assert "stopped answering" in text_of(back), text_of(back)
            assert sandboxes(folder) == [replaced]


async def test_a_sandbox_that_cannot_start_at_first_is_started_by_a_later_call(tmp_path: Path, data_dir: Path) -> None:
    """Another sandbox holds the state folder (say, one a user started by hand on it): the server's first start
    fails, calls say why (no traceback), and once the folder is free a later call starts it and says so."""
    folder = (tmp_path / "state" / "sandbox" / "server").resolve()
    squatter = Sandbox.start(state_dir=folder, pace="fast")
    server = build_server(make_settings(tmp_path, data_dir))
    try:
        with anyio.fail_after(120):
            async with Client(server) as client:
                down = await client.call_tool("list_workspaces", {})
                assert down.is_error
                assert "could not be started" in text_of(down) and "in use by another sandbox" in text_of(down)
                assert "Traceback" not in text_of(down)
                squatter.close()
                while (back := await client.call_tool("list_workspaces", {})).is_error:
                    assert "could not be started" in text_of(back), text_of(back)
                    await anyio.sleep(0.5)  # the next attempt comes after a short backoff
                assert "it is running now" in text_of(back), text_of(back)
                created = await client.call_tool("create_dataset", {"name": "later", "fields": SCHEMA_FIELDS})
                assert not created.is_error, text_of(created)
    finally:
        squatter.close()


async def test_the_shared_sandbox_accepts_only_its_random_token(tmp_path: Path, data_dir: Path) -> None:
    """The server hands its sandbox a random token (kept in the state folder, readable by this user only); the
    sandbox refuses any other, so another local program cannot read the user's sandbox datasets."""
    server = build_server(make_settings(tmp_path, data_dir))
    folder = (tmp_path / "state" / "sandbox" / "server").resolve()
    with anyio.fail_after(60):
        async with Client(server) as client:
            listed = await client.call_tool("list_workspaces", {})
            assert not listed.is_error, text_of(listed)
            address = json.loads((folder / "address.json").read_text())
            token = (folder / "token").read_text().strip()
            assert address["token"] == token and len(token) >= 32
            for name in ("address.json", "token"):
                assert (folder / name).stat().st_mode & 0o077 == 0, f"{name} is private"
            async with httpx2.AsyncClient(base_url=address["url"], timeout=10, trust_env=False) as http:
                refused = await http.get("/api/v1/users/me/", headers={"Authorization": "Token anything-else"})
                accepted = await http.get("/api/v1/users/me/", headers={"Authorization": f"Token {token}"})
            assert (refused.status_code, accepted.status_code) == (401, 200)
            assert token not in text_of(listed)
