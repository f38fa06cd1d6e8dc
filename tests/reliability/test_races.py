"""Races on one upload (issue items B3, B4, B5): however many calls and processes race, one file to one dataset
makes one import; a file edited during its PUT is never recorded as imported; an import that received the file
before its server died is adopted, never uploaded again nor called harmless.

Real servers: in-memory MCP clients for one process, stdio server processes (Prolific mode, a sandbox in this
process standing in for Prolific) for two processes on one state directory and for the SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult

from prolific_mcp.api.client import ProlificClient
from prolific_mcp.api.models import UploadTarget
from prolific_mcp.sandbox import Sandbox
from prolific_mcp.server.app import build_server
from prolific_mcp.settings import Settings
from tests.reliability.conftest import api_dataset, stdio_params
from tests.reliability.test_processes import _cmdline, children, gone, wait_for
from tests.server.conftest import call, ok, records, text_of, write_jsonl

pytestmark = pytest.mark.anyio

ROUNDS = 3
CALLS = 5
TOKEN = "tok-races"


def _partial_file(data_dir: Path, n: int) -> Path:
    """A file with one record the dataset rejects (so a partial import writes one rejected-records file)."""
    return write_jsonl(data_dir / f"race{n}.jsonl", records(40, bad={3: {"photo": "not a url"}}, start=n * 1000))


def _imports(sbx: Sandbox, dataset_id: str) -> list[tuple[str, str]]:
    """(import id, status) of every import the sandbox holds for a dataset, read from its own database."""
    (db_path,) = sbx.state_dir.glob("*.sqlite3")
    db = sqlite3.connect(db_path)
    try:
        return db.execute(
            "SELECT u.id, u.status FROM uploads u JOIN datasets d ON u.dataset_pk = d.pk WHERE d.id = ? ORDER BY u.pk",
            (dataset_id,),
        ).fetchall()
    finally:
        db.close()


def _rejected_files(data_dir: Path, n: int) -> list[str]:
    return sorted(p.name for p in data_dir.glob(f"race{n}.rejected*"))


async def _race(clients: list[Client], dataset_id: str, path: str) -> list[CallToolResult]:
    results: list[CallToolResult] = []

    async def one(client: Client) -> None:
        results.append(await call(client, "upload_file", {"dataset_id": dataset_id, "path": path, "wait_seconds": 60}))

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(one, client)
    return results


def _one_import(results: list[CallToolResult], sbx: Sandbox, dataset_id: str) -> str:
    """Every call succeeded and names the same import, which is the only one the dataset has."""
    failures = [text_of(r)[:400] for r in results if r.is_error]
    assert failures == [], failures
    ids = {(r.structured_content or {})["import_id"] for r in results}
    assert len(ids) == 1, f"one import for every call, got {ids}"
    (import_id,) = ids
    assert _imports(sbx, dataset_id) == [(import_id, "partial")], "exactly one import of the file"
    return str(import_id)


async def test_concurrent_calls_in_one_server_make_one_import(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox, settings: Settings
) -> None:
    """B3: five `upload_file` calls with the same file at once, in one server, three rounds: each round makes
    exactly one import, one PUT and one rejected-records file, and every call reports that import."""
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(120):
        async with Client(server) as client:
            for n in range(ROUNDS):
                _partial_file(data_dir, n)
                dataset_id = await api_dataset(sandbox, f"race {n}", token=TOKEN)
                puts_before = len(sandbox.requests.for_server("s3"))
                results = await _race([client] * CALLS, dataset_id, f"race{n}.jsonl")
                _one_import(results, sandbox, dataset_id)
                assert len(sandbox.requests.for_server("s3")) - puts_before == 1, "one PUT"
                assert _rejected_files(data_dir, n) == [f"race{n}.rejected.jsonl"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="stdio servers as processes (Linux CI)")
async def test_two_server_processes_on_one_state_directory_make_one_import(tmp_path: Path, data_dir: Path) -> None:
    """B3: two stdio server processes on one state directory (Prolific mode), each making two `upload_file` calls
    with the same file at the same moment, three rounds: one import and one rejected-records file per round."""
    with Sandbox.start(state_dir=tmp_path / "prolific", pace="fast", token=TOKEN) as sbx:
        params = stdio_params(tmp_path, data_dir, PROLIFIC_MODE="prolific", PROLIFIC_TOKEN=TOKEN, PROLIFIC_URL=sbx.url)
        with anyio.fail_after(240):
            async with AsyncExitStack() as stack:
                clients = []
                for name in ("one", "two"):
                    errlog = stack.enter_context((tmp_path / f"stderr-{name}.txt").open("w"))
                    clients.append(await stack.enter_async_context(Client(stdio_client(params, errlog=errlog))))
                for n in range(ROUNDS):
                    _partial_file(data_dir, n)
                    dataset_id = await api_dataset(sbx, f"race {n}", token=TOKEN)
                    results = await _race(clients * 2, dataset_id, f"race{n}.jsonl")
                    _one_import(results, sbx, dataset_id)
                    assert _rejected_files(data_dir, n) == [f"race{n}.rejected.jsonl"]


# --- B4: a file edited in place during its PUT --------------------------------------------------------------------


async def test_a_file_rewritten_at_the_same_size_during_the_put_is_not_imported(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B4: the file is rewritten in place, same size, different bytes, while the (slowed) PUT runs: the bytes
    sent do not hash to the pre-flight's sha256, so the PUT stops before its last chunk, the import never gets a
    whole file, the call says the file changed, the ledger records nothing as imported, and the restored original
    then uploads as a new import (not "already imported")."""
    path = write_jsonl(data_dir / "edited.jsonl", records(30_000))  # about 3 MB: several 1 MiB chunks
    original = path.read_bytes()
    edited = original.replace(b"Review number", b"Rev1ew number")
    assert len(edited) == len(original) and edited != original
    sandbox.faults.add("PUT *", server="s3", action="pass", latency=0.5, times=1)  # a slow store
    rewritten: list[int] = []
    real_put = ProlificClient.put_file

    async def put_file(self: ProlificClient, target: UploadTarget, source: Any, **kwargs: Any) -> Any:
        report = kwargs.pop("on_progress", None)

        async def on_progress(sent: int, total: int) -> None:
            if not rewritten:
                rewritten.append(sent)
                with path.open("r+b") as handle:  # in place: the same inode, the same size
                    handle.write(edited)
            if report is not None:
                await report(sent, total)

        return await real_put(self, target, source, on_progress=on_progress, **kwargs)

    monkeypatch.setattr(ProlificClient, "put_file", put_file)
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(60):
        async with Client(server) as client:
            dataset_id = await api_dataset(sandbox, "edited", token=TOKEN)
            result = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "edited.jsonl"})
            assert rewritten, "the file was rewritten during the PUT"
            assert result.is_error
            text = text_of(result)
            assert "the file changed during upload, nothing was imported" in text
            assert "edited in place" in text
            (first,) = _imports(sandbox, dataset_id)
            assert first[1] == "uninitialised", "the store never got the whole edited file"
            puts = await wait_for(lambda: sandbox.requests.for_server("s3"), "the store's record of the PUT")
            assert [p.body_size < len(original) for p in puts] == [True]
            ledger = sqlite3.connect(settings.state_dir / "sandbox" / "ledger.sqlite3")
            states = ledger.execute("SELECT import_id, state FROM uploads").fetchall()
            ledger.close()
            assert states == [(first[0], "orphaned")], "nothing recorded as imported under the checked hash"
            path.write_bytes(original)
            again = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "edited.jsonl"})
            data = again.structured_content or {}
            assert (data["status"], data["accepted_count"], data["from_ledger"]) == ("complete", 30_000, False)
            assert data["orphaned_imports"] == [first[0]]
            assert _imports(sandbox, dataset_id) == [first, (data["import_id"], "complete")]


# --- B5: the store kept the file, and its answer was lost ---------------------------------------------------------


async def test_an_answer_lost_after_the_store_kept_the_file_is_followed_not_called_harmless(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox, settings: Settings
) -> None:
    """B5 (one process): every PUT is stored, then its connection dropped before the answer: the upload's
    retries all fail, yet the import received the file, so the call follows it to its outcome instead of calling
    it harmless, and the same file afterwards is the stored outcome (one import)."""
    write_jsonl(data_dir / "lost.jsonl", records(50))
    sandbox.faults.add("PUT *", server="s3", action="drop", when="after", times=None)
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(90):
        async with Client(server) as client:
            dataset_id = await api_dataset(sandbox, "lost answer", token=TOKEN)
            result = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "lost.jsonl"})
            data = result.structured_content or {}
            assert (data["status"], data["accepted_count"]) == ("complete", 50)
            assert "harmless" not in text_of(result) and data["orphaned_imports"] == []
            sandbox.faults.clear()
            again = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "lost.jsonl"})
            assert (again.structured_content or {})["from_ledger"] is True
    assert _imports(sandbox, dataset_id) == [(data["import_id"], "complete")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the server process (Linux)")
async def test_a_server_killed_after_the_store_kept_the_file_is_adopted_after_restart(
    tmp_path: Path, data_dir: Path
) -> None:
    """B5 (SIGKILL): the store keeps the file but holds its answer; the server is killed meanwhile, leaving its
    ledger row `uploading` under a dead owner. Started again on the same state directory, `upload_file` with the
    same file checks that import first, finds it received the file, and follows it: one import, no second PUT,
    and nothing calls it harmless."""
    count = 200
    write_jsonl(data_dir / "kept.jsonl", records(count))
    with Sandbox.start(state_dir=tmp_path / "prolific", pace="fast", token=TOKEN) as sbx:
        params = stdio_params(tmp_path, data_dir, PROLIFIC_MODE="prolific", PROLIFIC_TOKEN=TOKEN, PROLIFIC_URL=sbx.url)
        sbx.faults.add("PUT *", server="s3", action="stall", seconds=60, when="after", times=1)
        with anyio.fail_after(120):
            errlog = (tmp_path / "stderr-1.txt").open("w")
            dataset_id = ""
            server_pid = 0
            with contextlib.suppress(Exception):  # the session dies with its server
                async with Client(stdio_client(params, errlog=errlog)) as client:
                    dataset_id = await api_dataset(sbx, "killed", token=TOKEN)
                    (server_pid,) = [p for p in children(os.getpid(), "") if _cmdline(p)[1:3] == ["-m", "prolific_mcp"]]
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(
                            lambda: client.call_tool(
                                "upload_file", {"dataset_id": dataset_id, "path": "kept.jsonl", "wait_seconds": 60}
                            )
                        )
                        await wait_for(
                            lambda: [s for _, s in _imports(sbx, dataset_id) if s != "uninitialised"], "stored"
                        )
                        os.kill(server_pid, signal.SIGKILL)
                        await wait_for(lambda: gone(server_pid), "the server to die")
                        tg.cancel_scope.cancel()
            errlog.close()
            assert dataset_id and server_pid, "the first server started the upload"
            ((first_import, _),) = _imports(sbx, dataset_id)
            async with Client(stdio_client(params, errlog=(tmp_path / "stderr-2.txt").open("w"))) as client:
                result = await ok(
                    client, "upload_file", {"dataset_id": dataset_id, "path": "kept.jsonl", "wait_seconds": 60}
                )
        data = result.structured_content or {}
        assert data["import_id"] == first_import, "the import that holds the file is adopted"
        assert (data["status"], data["accepted_count"]) == ("complete", count)
        assert "harmless" not in text_of(result) and data["orphaned_imports"] == []
        assert _imports(sbx, dataset_id) == [(first_import, "complete")], "one import, never uploaded twice"
        assert len(sbx.requests.for_server("s3")) == 1, "one PUT"
