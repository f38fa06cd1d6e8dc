"""Uploads under faults, through the tools (matrix F7, S2, A6, A7, A9, M2, M4).

Hooks: `ProlificClient.put_file` is wrapped to act at an exact point of a PUT (change the file after its first
chunk, hold PUTs at a gate); `UploadManager` is wrapped to keep the instance the server made.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from prolific_mcp.api.client import ProlificClient
from prolific_mcp.api.models import DatasetSchema, UploadTarget
from prolific_mcp.operations import uploads as operations
from prolific_mcp.operations.deps import Deps, ServiceOptions
from prolific_mcp.sandbox import Pace, Sandbox
from prolific_mcp.server import lifespan as state_module
from prolific_mcp.server.app import build_server
from prolific_mcp.server.http import HttpOptions
from prolific_mcp.settings import Settings
from prolific_mcp.uploads.jobs import UploadManager
from prolific_mcp.uploads.ledger import Ledger
from tests.reliability.test_processes import wait_for
from tests.server.conftest import SCHEMA_FIELDS, SCHEMA_MAP, call, make_settings, ok, records, text_of, write_jsonl
from tests.server.test_transports import _serve

pytestmark = pytest.mark.anyio

IMPORTS = "/api/v1/data-collection/datasets/*/imports/*"


async def _dataset(client: Client, name: str = "Uploads") -> str:
    created = await ok(client, "create_dataset", {"name": name, "fields": SCHEMA_FIELDS, "strict": False})
    return str((created.structured_content or {})["id"])


def _ledger(settings: Settings) -> Ledger:
    return Ledger(settings.state_dir / "sandbox" / "ledger.sqlite3")


class Managers(list[UploadManager]):
    """The UploadManagers the server built; `queue_limit` is given to the next ones."""

    queue_limit = 100


@pytest.fixture
def managers(monkeypatch: pytest.MonkeyPatch) -> Managers:
    made = Managers()
    real = state_module.UploadManager

    def factory(*args: Any, **kwargs: Any) -> UploadManager:
        manager = real(*args, queue_limit=made.queue_limit, **kwargs)
        made.append(manager)
        return manager

    monkeypatch.setattr(state_module, "UploadManager", factory)
    return made


# --- F7: the file changes while the PUT runs ---------------------------------------------------------------------


@pytest.mark.parametrize("change", ["shrink", "grow", "replace"])
async def test_a_file_that_changes_during_the_put(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox, settings: Settings, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """F7: shrink or grow → the call says nothing was imported, no import is polled, the ledger is not left
    'uploading', and the same file uploads cleanly afterwards. A file replaced (renamed over) during the PUT is
    not read: the bytes sent are the opened file's, as checked."""
    path = write_jsonl(data_dir / "big.jsonl", records(30_000))  # about 3 MB: several 1 MiB chunks
    original = path.read_bytes()
    changed: list[int] = []
    real_put = ProlificClient.put_file

    async def put_file(self: ProlificClient, target: UploadTarget, source: Any, **kwargs: Any) -> Any:
        report = kwargs.pop("on_progress", None)

        async def on_progress(sent: int, total: int) -> None:
            if not changed:
                changed.append(sent)
                if change == "shrink":
                    os.truncate(path, len(original) // 2)
                elif change == "grow":
                    with path.open("ab") as handle:
                        handle.write(b'{"review": "one more"}\n')
                else:
                    replacement = data_dir / "other.jsonl"
                    write_jsonl(replacement, records(3, start=900))
                    os.replace(replacement, path)
            if report is not None:
                await report(sent, total)

        return await real_put(self, target, source, on_progress=on_progress, **kwargs)

    monkeypatch.setattr(ProlificClient, "put_file", put_file)
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(60):
        async with Client(server) as client:
            dataset_id = await _dataset(client)
            result = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "big.jsonl"})
            assert changed, "the hook must have run during the PUT"
            # The store logs a PUT once it has seen the connection end, which may come after the call's answer.
            puts = await wait_for(lambda: sandbox.requests.for_server("s3"), "the store's record of the PUT")
            rows = _ledger(settings).uploads_in_state("sandbox", "url_issued", "uploading", "uploaded", "orphaned")
            if change == "replace":
                assert not result.is_error, text_of(result)
                assert (result.structured_content or {})["accepted_count"] == 30_000
                assert [p.body_size for p in puts] == [len(original)]
                return
            assert result.is_error
            text = text_of(result)
            assert "the file changed during upload, nothing was imported" in text
            assert [r.state for r in rows] == ["orphaned"], "the ledger must not be left 'uploading'"
            import_id = rows[0].import_id
            assert import_id and import_id in text
            assert [p.body_size < len(original) for p in puts] == [True], "the store never got a whole body"
            polled = [r for r in sandbox.requests if r.method == "GET" and r.path.endswith(f"/imports/{import_id}")]
            assert polled == [], "no import status is polled after a failed PUT"
            path.write_bytes(original)
            again = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "big.jsonl"})
            assert (again.structured_content or {})["status"] == "complete"
            assert (again.structured_content or {})["import_id"] != import_id


# --- S2: an upload URL that expired ------------------------------------------------------------------------------


async def test_an_expired_upload_url_is_replaced_once_and_the_orphan_reported(tmp_path: Path, data_dir: Path) -> None:
    """S2 (a): the first URL expires before its PUT starts (the fake S3 holds the request past the URL's lifetime):
    one new URL is requested, the file goes up, and the abandoned import is named in the result."""
    with Sandbox.start(state_dir=tmp_path / "sbx", pace="fast", url_lifetime=2.0) as sbx:
        sbx.faults.add("PUT *", action="pass", latency=3.0, times=1)
        write_jsonl(data_dir / "r.jsonl", records(5))
        server = build_server(make_settings(tmp_path, data_dir), sandbox_url=sbx.url)
        with anyio.fail_after(60):
            async with Client(server) as client:
                dataset_id = await _dataset(client)
                result = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
                shown = await ok(client, "get_dataset", {"dataset_id": dataset_id})
    data = result.structured_content or {}
    urls = [r for r in sbx.requests if "/upload-url/" in r.path]
    puts = sbx.requests.for_server("s3")
    assert len(urls) == 2 and [p.status for p in puts] == [403, 200]
    assert data["status"] == "complete"
    (orphan,) = data["orphaned_imports"]
    assert orphan != data["import_id"] and orphan in text_of(result)
    imports = {i["import_id"]: i["status"] for i in (shown.structured_content or {})["imports"]}
    assert imports == {orphan: "uninitialised", data["import_id"]: "complete"}


async def test_a_slow_put_started_before_expiry_finishes(tmp_path: Path) -> None:
    """S2 (b): expiry is judged when a PUT starts; one that started in time and outlives the URL succeeds (the
    client never cuts an upload short because of the URL's lifetime)."""
    body = b"".join(b'{"text": "r%d", "source": "s"}\n' % i for i in range(20_000))
    path = tmp_path / "slow.jsonl"
    path.write_bytes(body)
    schema = DatasetSchema.model_validate({"strict": False, "fields": {"text": {"type": "text"}}})
    with Sandbox.start(state_dir=tmp_path / "sbx", pace="fast", url_lifetime=1.0) as sbx:
        with anyio.fail_after(30):
            async with ProlificClient(sbx.url, "t0ken-for-the-sandbox", sandbox=True) as client:
                dataset = await client.create_dataset("Slow", sbx.workspace_id, schema)
                target = await client.get_upload_url(dataset.id, "slow.jsonl")

                async def slow_sender(sent: int, total: int) -> None:
                    await anyio.sleep(0.6)  # the fault: a sender slower than the URL's lifetime

                result = await client.put_file(
                    target, path, size=len(body), chunk_size=len(body) // 3 + 1, on_progress=slow_sender
                )
    assert result.status_code == 200 and result.attempts == 1
    (put,) = sbx.requests.for_server("s3")
    assert put.body_size == len(body)


# --- A6, A7: odd and never-ending imports --------------------------------------------------------------------------


async def test_an_unknown_import_status_is_waited_on_and_named(tmp_path: Path, data_dir: Path) -> None:
    """A6: an import status this version does not know is treated as still running, and named in progress."""
    with Sandbox.start(state_dir=tmp_path / "sbx", pace="fast") as sbx:
        body = '{"import_id": "x", "status": "archiving", "errors": null, "traceback": "File secret.py"}'
        sbx.faults.add(f"GET {IMPORTS}", status=200, body=body, content_type="application/json", times=1)
        write_jsonl(data_dir / "r.jsonl", records(3))
        server = build_server(make_settings(tmp_path, data_dir), sandbox_url=sbx.url)
        messages: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")

        with anyio.fail_after(60):
            async with Client(server) as client:
                dataset_id = await _dataset(client)
                result = await ok(
                    client,
                    "upload_file",
                    {"dataset_id": dataset_id, "path": "r.jsonl"},
                    progress_callback=on_progress,
                )
    assert (result.structured_content or {})["status"] == "complete"
    assert any("archiving" in m for m in messages), messages
    assert not any("secret.py" in m for m in messages)


async def test_an_import_that_never_finishes_is_handed_off_and_not_watched_forever(
    tmp_path: Path, data_dir: Path, managers: Managers
) -> None:
    """A7: an import stuck in `processing`: the call returns at its wait with the import id and the exact next
    call; the background watch stops at the longest wait; the same file later resumes the same import."""
    stuck = Pace(queued=0.0, processing=3600.0)
    settings = make_settings(tmp_path, data_dir, PROLIFIC_MCP_WAIT_SECONDS="1", PROLIFIC_MCP_MAX_WAIT_SECONDS="2")
    with Sandbox.start(state_dir=tmp_path / "sbx", pace=stuck) as sbx:
        write_jsonl(data_dir / "r.jsonl", records(4))
        server = build_server(settings, sandbox_url=sbx.url)
        with anyio.fail_after(60):
            async with Client(server) as client:
                dataset_id = await _dataset(client)
                first = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
                data = first.structured_content or {}
                import_id = data["import_id"]
                assert data["finished"] is False and import_id
                assert data["next_step"] == (  # the configured wait (PROLIFIC_MCP_WAIT_SECONDS)
                    f'get_import_status(dataset_id="{dataset_id}", import_id="{import_id}", wait_seconds=1)'
                )
                assert import_id in text_of(first) and "continues in the background" in text_of(first)
                (manager,) = managers
                job = manager.job_for_import(dataset_id, import_id)
                assert job is not None
                await job.done.wait()  # bounded by fail_after: the watch must end by itself
                assert job.watch_gave_up and job.error is None
                assert manager.job_for_import(dataset_id, import_id) is None
                status = await ok(
                    client, "get_import_status", {"dataset_id": dataset_id, "import_id": import_id, "wait_seconds": 0}
                )
                assert (status.structured_content or {})["status"] == "processing"
                assert import_id in text_of(status)
                again = await ok(
                    client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl", "wait_seconds": 0}
                )
                assert (again.structured_content or {})["import_id"] == import_id
    assert len(sbx.requests.for_server("s3")) == 1, "resuming never uploads the file again"


# --- A9: a saturated connection pool -------------------------------------------------------------------------------


async def test_uploads_share_one_connection_without_mixing_up(tmp_path: Path) -> None:
    """A9: three uploads at once through a pool of one connection: all end, each with its own import."""
    with Sandbox.start(state_dir=tmp_path / "sbx", pace="default") as sbx:
        transport = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_connections=1))
        folder = tmp_path / "data"
        folder.mkdir()
        paths = [write_jsonl(folder / f"f{i}.jsonl", records(5, start=100 * i)) for i in range(3)]
        with anyio.fail_after(60):
            async with ProlificClient(sbx.url, "t0ken-for-the-sandbox", sandbox=True, transport=transport) as client:
                ledger = Ledger(tmp_path / "ledger.sqlite3")
                async with UploadManager(client, ledger, max_uploads=3) as manager:
                    options = ServiceOptions(
                        mode="sandbox", origin="sandbox", allowed_dirs=[folder], state_dir=tmp_path
                    )
                    deps = Deps(client, ledger, manager, options)
                    schema = DatasetSchema.model_validate({"strict": False, "fields": SCHEMA_MAP})
                    dataset = await client.create_dataset("Pool", sbx.workspace_id, schema)
                    results: dict[str, Any] = {}

                    async def upload(path: Path) -> None:
                        results[path.name] = await operations.upload_file(deps, dataset.id, str(path), wait_seconds=30)

                    async with anyio.create_task_group() as tg:
                        for path in paths:
                            tg.start_soon(upload, path)
                ledger.close()
    assert {r.status for r in results.values()} == {"complete"}
    assert len({r.import_id for r in results.values()}) == 3
    assert len(sbx.requests.for_server("s3")) == 3


# --- M4: the upload queue under pressure -----------------------------------------------------------------------------


async def test_the_upload_queue_under_a_flood_of_calls(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, managers: Managers
) -> None:
    """M4: ten uploads at once with 2 slots and a queue of 5: exactly 2 PUTs run, 5 wait with 'waiting for an
    upload slot (n ahead)', and exactly 3 are told the server is busy; once the PUTs may go on, all 7 finish."""
    settings = make_settings(tmp_path, data_dir, PROLIFIC_MCP_MAX_UPLOADS="2")
    managers.queue_limit = 5
    gate = anyio.Event()
    in_flight: list[int] = [0, 0]  # now, most at once
    real_put = ProlificClient.put_file

    async def gated_put(self: ProlificClient, *args: Any, **kwargs: Any) -> Any:
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        try:
            await gate.wait()
            return await real_put(self, *args, **kwargs)
        finally:
            in_flight[0] -= 1

    monkeypatch.setattr(ProlificClient, "put_file", gated_put)
    names = [f"f{i}.jsonl" for i in range(10)]
    for i, name in enumerate(names):
        write_jsonl(data_dir / name, records(3, start=10 * i))
    with Sandbox.start(state_dir=tmp_path / "sbx", pace="fast") as sbx:
        server = build_server(settings, sandbox_url=sbx.url)
        results: dict[str, Any] = {}
        messages: dict[str, list[str]] = {name: [] for name in names}
        with anyio.fail_after(60):
            async with Client(server) as client:
                dataset_id = await _dataset(client)

                async def upload(name: str) -> None:
                    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                        messages[name].append(message or "")

                    results[name] = await call(
                        client,
                        "upload_file",
                        {"dataset_id": dataset_id, "path": name, "wait_seconds": 30},
                        progress_callback=on_progress,
                    )

                async with anyio.create_task_group() as tg:
                    for name in names:
                        tg.start_soon(upload, name)
                    (manager,) = managers
                    while not (in_flight[0] == 2 and manager.queued == 5 and len(results) == 3):
                        await anyio.sleep(0.02)
                    busy = [name for name, result in results.items() if result.is_error]
                    assert len(busy) == 3
                    for name in busy:
                        assert "busy" in text_of(results[name]) and "queue holds 5" in text_of(results[name])
                    gate.set()
    done = [r for r in results.values() if not r.is_error]
    assert len(done) == 7
    assert {(r.structured_content or {})["status"] for r in done} == {"complete"}
    assert in_flight[1] == 2, "never more PUTs at once than PROLIFIC_MCP_MAX_UPLOADS"
    waited = sorted({m for ms in messages.values() for m in ms if m.startswith("waiting for an upload slot")})
    places = ["next in line", *(f"{n} ahead" for n in range(1, 5))]
    assert set(waited) == {f"waiting for an upload slot ({p}): every slot is busy with another upload" for p in places}
    assert len(sbx.requests.for_server("s3")) == 7


# --- M2: the client goes away mid-upload -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_that_disconnects_mid_put_leaves_a_recoverable_trace(
    tmp_path: Path, data_dir: Path, settings: Settings, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    """M2: over streamable HTTP, the client's connection drops while the PUT is stalled.

    2026-07-28 (auto): the stream closing cancels the call, so the PUT is aborted as for M1: the ledger says
    'cancelled' and stderr says which import was left. 2025-11-25 (legacy): a dropped stream does not cancel a
    request, so the upload goes on in the server. Either way the import id is in the log, and the same file
    uploaded again is neither lost nor stored twice."""
    caplog.set_level(logging.INFO, logger="prolific_mcp")
    token = "m2-bearer-token-0123456789"
    with Sandbox.start(state_dir=tmp_path / "sbx", pace="fast") as sbx:
        sbx.faults.add("PUT *", action="stall", seconds=2, times=1)
        write_jsonl(data_dir / "r.jsonl", records(20))
        server = build_server(settings, sandbox_url=sbx.url)
        ledger = _ledger(settings)
        with anyio.fail_after(60):
            async with _serve(server, HttpOptions(token=token)) as url:
                headers = {"Authorization": f"Bearer {token}"}
                async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
                    async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
                        dataset_id = await _dataset(client)
                    dropped = httpx2.AsyncClient(headers=headers, timeout=60)
                    with contextlib.suppress(Exception):
                        async with (
                            dropped,
                            Client(streamable_http_client(url, http_client=dropped), mode=mode) as doomed,
                            anyio.create_task_group() as tg,
                        ):
                            tg.start_soon(
                                doomed.call_tool, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"}
                            )
                            while not sbx.requests.for_server("s3"):
                                await anyio.sleep(0.02)
                            await dropped.aclose()  # the connection drops under the call
                            tg.cancel_scope.cancel()
                    if mode == "auto":
                        while not ledger.uploads_in_state("sandbox", "cancelled"):
                            await anyio.sleep(0.05)
                    (first,) = ledger.uploads_in_state("sandbox", "uploading", "uploaded", "complete", "cancelled")
                    async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
                        again = await ok(
                            client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl", "wait_seconds": 30}
                        )
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("prolific_mcp") and ".sandbox" not in r.name]
    assert first.import_id and any(first.import_id in line for line in ours)
    data = again.structured_content or {}
    assert data["status"] == "complete"
    if mode == "auto":
        assert first.state == "cancelled"
        assert any("cancelled before the whole file was sent" in line and first.import_id in line for line in ours)
        assert data["import_id"] != first.import_id
    else:
        assert first.state != "cancelled"
        assert data["import_id"] == first.import_id, "the upload that went on is followed, not started again"
    stored = [p for p in sbx.requests.for_server("s3") if p.status == 200]
    assert len(stored) == 1, "the file reached the store once"
