"""A large file's PUT starts before its pre-flight scan ends (docs/architecture.md, Files and pre-flight): the file
is hashed and claimed first, the scan runs in a child process beside the PUT, and the PUT holds its last chunk
until the scan has cleared the file (ruled out every failure of the whole file) or given its verdict. A file the
scan finds certain to fail imports nothing; concurrent calls still make one import; the result carries what the
pre-flight found, even when the PUT ended before the scan.

The size from which a file goes this way (64 MiB) is lowered to 1 MiB here, so that the files stay small; the
scan is held until the PUT has started, so that the PUT really runs before the verdict (the order a large file
has, made certain).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult

from prolific_mcp.api.client import ProlificClient
from prolific_mcp.api.models import UploadTarget
from prolific_mcp.operations import early_put
from prolific_mcp.records import Schema
from prolific_mcp.sandbox import Sandbox
from prolific_mcp.server.app import build_server
from prolific_mcp.settings import Settings
from prolific_mcp.uploads import background_scan
from prolific_mcp.uploads.background_scan import BackgroundScan, Cleared, Progress, ScanChildError
from prolific_mcp.uploads.scan import ScanInput, ScanReport, scan_file, scan_without_hash
from tests.reliability.conftest import api_dataset
from tests.reliability.test_processes import wait_for
from tests.reliability.test_races import _imports, _race
from tests.server.conftest import call, ok, records, text_of, write_jsonl

pytestmark = pytest.mark.anyio

TOKEN = "tok-early"
COUNT = 20_000
"""Records in each file: about 1.9 MB, several 1 MiB chunks."""


class Spy:
    """What happened in order: the PUTs started, the scans ended, and in which process each scan ran."""

    def __init__(self) -> None:
        self.put_started = anyio.Event()
        self.puts = 0
        self.scans_in_child = 0
        self.scans_ended = 0


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    """Early PUTs from 1 MiB; every background scan, once started, waits for a PUT to start before it reads (at
    most 30 s), outside the child-process slots so that no scan waiting here keeps the owner's scan from its turn."""
    spy = Spy()
    monkeypatch.setattr(early_put, "EARLY_PUT_MIN_BYTES", 1024 * 1024)
    real_put = ProlificClient.put_file
    real_scan = background_scan.scan_beside
    real_child = background_scan._scan_in_child

    async def put_file(self: ProlificClient, target: UploadTarget, source: Any, **kwargs: Any) -> Any:
        spy.puts += 1
        spy.put_started.set()
        return await real_put(self, target, source, **kwargs)

    async def scan_beside(
        given: ScanInput, progress: Progress | None = None, cleared: Cleared | None = None
    ) -> ScanReport:
        if progress is not None:
            progress(0)  # under way: the upload URL may be asked for
        with anyio.move_on_after(30):
            await spy.put_started.wait()
        return await real_scan(given, progress, cleared)

    async def scan_in_child(
        given: ScanInput, progress: Progress | None = None, cleared: Cleared | None = None
    ) -> ScanReport:
        report = await real_child(given, progress, cleared)
        spy.scans_in_child += 1
        spy.scans_ended += 1
        return report

    monkeypatch.setattr(ProlificClient, "put_file", put_file)
    monkeypatch.setattr(background_scan, "scan_beside", scan_beside)
    monkeypatch.setattr(background_scan, "_scan_in_child", scan_in_child)
    return spy


def _ledger(settings: Settings) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(settings.state_dir / "sandbox" / "ledger.sqlite3")
    try:
        return db.execute("SELECT import_id, state, record_count, sha256 FROM uploads ORDER BY id").fetchall()
    finally:
        db.close()


async def _upload_once(settings: Settings, sandbox: Sandbox, name: str, filename: str) -> CallToolResult:
    """One `upload_file` of `filename` to a new dataset `name`, through an in-memory client; it must succeed."""
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(90):
        async with Client(server) as client:
            dataset_id = await api_dataset(sandbox, name, token=TOKEN)
            return await ok(client, "upload_file", {"dataset_id": dataset_id, "path": filename})


async def test_a_large_file_is_put_beside_its_scan_and_the_result_has_the_preflight(
    data_dir: Path, sandbox: Sandbox, settings: Settings, spy: Spy
) -> None:
    path = write_jsonl(data_dir / "big.jsonl", records(COUNT, bad={7: {"photo": "not a url"}}))
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    result = await _upload_once(settings, sandbox, "early", "big.jsonl")
    data = result.structured_content or {}
    assert (data["status"], data["accepted_count"], data["rejected_count"]) == ("partial", COUNT - 1, 1)
    assert data["record_count"] == COUNT
    preflight = data["preflight"]
    assert (preflight["sha256"], preflight["record_count"], preflight["expected_rejections"]) == (sha256, COUNT, 1)
    assert spy.scans_in_child == 1, "the scan ran in a child process"
    assert spy.puts == 1 and len(sandbox.requests.for_server("s3")) == 1
    assert _ledger(settings) == [(data["import_id"], "partial", COUNT, sha256)]
    assert "record 8" in text_of(result)


async def test_a_file_certain_to_fail_stops_its_put_before_the_end_and_imports_nothing(
    data_dir: Path, sandbox: Sandbox, settings: Settings, spy: Spy
) -> None:
    """The scan's verdict comes while the PUT holds its last chunk: the file shares no key with the schema, so the
    PUT stops there. The store never has the whole file, the import stays `uninitialised`, the call refuses the
    file as the ordinary pre-flight does, and the same file again is refused before any upload URL."""
    rows = [{"text": f"line {i}", "image": f"https://img.example.com/{i}.png"} for i in range(COUNT)]
    path = write_jsonl(data_dir / "wrong.jsonl", rows)
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(90):
        async with Client(server) as client:
            dataset_id = await api_dataset(sandbox, "refused", token=TOKEN)
            result = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "wrong.jsonl"})
            assert result.is_error
            text = text_of(result)
            assert "shares no key" in text or "no key" in text, text
            assert "Nothing was imported: the upload was stopped before its last part" in text
            ((import_id, status),) = _imports(sandbox, dataset_id)
            assert status == "uninitialised"
            (put,) = await wait_for(lambda: sandbox.requests.for_server("s3"), "the store's record of the PUT")
            assert put.body_size < path.stat().st_size, "the last chunk was never sent"
            assert [r[:2] for r in _ledger(settings)] == [(import_id, "cancelled")]
            again = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "wrong.jsonl"})
            assert again.is_error and "Nothing was uploaded." in text_of(again)
            assert _imports(sandbox, dataset_id) == [(import_id, "uninitialised")], "refused before any URL"
            assert spy.puts == 1


async def test_concurrent_calls_with_one_large_file_make_one_import(
    data_dir: Path, sandbox: Sandbox, settings: Settings, spy: Spy
) -> None:
    """Five calls at once with one file: one claims it and PUTs beside its scan, the others wait for their scans
    and attach to that upload (one import, one PUT, every call names it)."""
    write_jsonl(data_dir / "race.jsonl", records(COUNT))
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(120):
        async with Client(server) as client:
            dataset_id = await api_dataset(sandbox, "race", token=TOKEN)
            results = await _race([client] * 5, dataset_id, "race.jsonl")
    assert [text_of(r)[:300] for r in results if r.is_error] == []
    ids = {(r.structured_content or {})["import_id"] for r in results}
    assert len(ids) == 1
    assert _imports(sandbox, dataset_id) == [(ids.pop(), "complete")]
    assert spy.puts == 1 and len(sandbox.requests.for_server("s3")) == 1


async def test_the_scan_runs_in_a_thread_when_no_child_process_can(
    data_dir: Path, sandbox: Sandbox, settings: Settings, spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_child(
        given: ScanInput, progress: Progress | None = None, cleared: Cleared | None = None
    ) -> ScanReport:
        raise ScanChildError("could not start (no such file)")

    monkeypatch.setattr(background_scan, "_scan_in_child", no_child)
    write_jsonl(data_dir / "thread.jsonl", records(COUNT))
    result = await _upload_once(settings, sandbox, "thread", "thread.jsonl")
    data = result.structured_content or {}
    assert (data["status"], data["accepted_count"], data["preflight"]["record_count"]) == ("complete", COUNT, COUNT)


async def test_a_file_known_to_the_ledger_takes_the_ordinary_path(
    data_dir: Path, sandbox: Sandbox, settings: Settings, spy: Spy
) -> None:
    """The same file again is the stored outcome, found before any URL: one import, one PUT."""
    write_jsonl(data_dir / "twice.jsonl", records(COUNT))
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(90):
        async with Client(server) as client:
            dataset_id = await api_dataset(sandbox, "twice", token=TOKEN)
            first = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "twice.jsonl"})
            again = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "twice.jsonl"})
    assert (again.structured_content or {})["from_ledger"] is True
    assert (again.structured_content or {})["import_id"] == (first.structured_content or {})["import_id"]
    assert spy.puts == 1


async def test_the_put_never_runs_further_ahead_of_the_scan_than_its_lead(
    data_dir: Path, sandbox: Sandbox, settings: Settings, spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the scan cannot clear before its last record (no record but the last has a key of the schema): with
    a lead of 256 KiB (and none from the scan's rate), every chunk but the last waits until the scan has read to
    256 KiB of its end; the last one waits until the scan has read the whole file (and cleared it there)."""
    monkeypatch.setattr(early_put, "SCAN_LEAD", 256 * 1024)
    monkeypatch.setattr(early_put, "HOLD_SECONDS", 0.0)
    seen: list[tuple[int, bool, int, bool]] = []
    real_pace = early_put.ScanGate.pace

    async def pace(self: early_put.ScanGate, end: int, last: bool) -> None:
        await real_pace(self, end, last)
        seen.append((end, last, self.scan.position, self.scan.done or self.scan.cleared))

    monkeypatch.setattr(early_put.ScanGate, "pace", pace)
    rows = [{"note": f"An unrelated note, number {i}, " * 3, "tag": f"t{i % 7}"} for i in range(COUNT - 1)]
    path = write_jsonl(data_dir / "paced.jsonl", [*rows, *records(1)])
    await _upload_once(settings, sandbox, "paced", "paced.jsonl")
    size = path.stat().st_size
    assert len(seen) >= 2 and seen[-1][:3] == (size, True, size) and seen[-1][3]
    for end, last, position, through in seen[:-1]:
        assert not last and (through or position >= end - 256 * 1024), (end, position)


async def test_a_cleared_file_is_sent_whole_before_its_scan_ends_and_the_outcome_has_the_preflight(
    data_dir: Path, sandbox: Sandbox, settings: Settings, spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan clears the file at its first record, then (held here) reads no further until the PUT has ended:
    the last chunk did not wait for the scan's end, and the outcome still has the pre-flight's findings (the
    record count, the rejection it expected), completed beside the watch of the import."""
    put_ended = threading.Event()
    scan_ended = threading.Event()
    ended_first: list[bool] = []
    real_put = ProlificClient.put_file  # the spy's, which counts the PUTs

    async def put_file(self: ProlificClient, target: UploadTarget, source: Any, **kwargs: Any) -> Any:
        try:
            return await real_put(self, target, source, **kwargs)
        finally:
            ended_first.append(scan_ended.is_set())
            put_ended.set()

    def held_scan(given: ScanInput, progress: Progress | None, cleared: Cleared | None) -> ScanReport:
        was_cleared: list[bool] = []

        def on_cleared() -> None:
            was_cleared.append(True)
            if cleared is not None:
                cleared()

        def on_read(offset: int) -> None:
            if progress is not None:
                progress(offset)
            if was_cleared:
                put_ended.wait(30)  # (bounded) the PUT runs on without this scan

        try:
            return scan_without_hash(given, on_read, on_cleared)
        finally:
            scan_ended.set()

    async def in_a_thread(
        given: ScanInput, progress: Progress | None = None, cleared: Cleared | None = None
    ) -> ScanReport:
        return await anyio.to_thread.run_sync(held_scan, given, progress, cleared)

    monkeypatch.setattr(ProlificClient, "put_file", put_file)
    monkeypatch.setattr(background_scan, "_scan_in_child", in_a_thread)
    write_jsonl(data_dir / "cleared.jsonl", records(COUNT, bad={COUNT - 2: {"photo": "not a url"}}))
    result = await _upload_once(settings, sandbox, "cleared", "cleared.jsonl")
    assert ended_first == [False], "the PUT ended while the scan was still reading"
    data = result.structured_content or {}
    assert (data["status"], data["rejected_count"]) == ("partial", 1)
    preflight = data["preflight"]
    assert (preflight["record_count"], preflight["expected_rejections"]) == (COUNT, 1)
    assert [r[2] for r in _ledger(settings)] == [COUNT], "the ledger has the record count"
    assert spy.puts == 1


# --- the background scan itself -----------------------------------------------------------------------------------


async def _run_in(tg: anyio.abc.TaskGroup) -> Callable[[Callable[[], Awaitable[None]]], None]:
    def spawn(func: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await func()

        tg.start_soon(run)

    return spawn


async def test_a_background_scan_reports_what_a_scan_in_this_process_finds(tmp_path: Path) -> None:

    path = write_jsonl(tmp_path / "r.jsonl", records(100_000, bad={3: {"photo": "x"}}))  # about 10 MB
    schema = Schema.from_dict(
        {
            "strict": False,
            "fields": {"review": {"type": "text"}, "photo": {"type": "image_url"}, "source": {"type": "metadata"}},
        }
    )
    with path.open("rb") as handle:
        fd = handle.fileno()
        async with anyio.create_task_group() as tg:
            scan = background_scan.start_scan(await _run_in(tg), fd, "jsonl", schema, path.stat().st_size)
            report = await scan.report()
        here = scan_file(fd, "jsonl", schema, expected_size=path.stat().st_size)
    assert report.sha256 == "" and here.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert scan.position == path.stat().st_size, "the child reported its progress to the end"
    report.sha256 = here.sha256
    assert report == here


def test_a_scan_without_a_hash_stops_reading_at_a_failure_of_the_whole_file(tmp_path: Path) -> None:
    """A binary file is refused from its first bytes: a scan that hashes reads on to the end (for the sha256), one
    without a hash stops there, so the scan beside a large file's hash ends first and the file is refused before
    any upload URL (the ordinary path)."""

    path = tmp_path / "image.jsonl"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(8 * 1024 * 1024))
    size = path.stat().st_size
    with path.open("rb") as handle:
        read: list[int] = []
        quick = scan_file(handle.fileno(), "jsonl", None, expected_size=size, digest=False, on_read=read.append)
        whole = scan_file(handle.fileno(), "jsonl", None, expected_size=size)
    assert quick.failure is not None and quick.failure == whole.failure
    assert "PNG" in quick.failure or "binary" in quick.failure, quick.failure
    assert max(read) < size, "the scan without a hash stopped early"
    assert whole.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and whole.size == size


async def test_stopping_a_background_scan_ends_it_and_says_so() -> None:
    started = anyio.Event()

    async def endless() -> ScanReport:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError

    scan = BackgroundScan()
    async with anyio.create_task_group() as tg:
        tg.start_soon(scan.run, endless)
        await started.wait()
        await scan.stop()
        assert scan.done
    with pytest.raises(ScanChildError, match="stopped before it ended"):
        await scan.report()


async def test_the_put_waits_for_the_scan_to_start_then_keeps_within_its_lead() -> None:
    """`keep_within(0)` (the upload URL waits on it) holds until the scan has its turn; then a PUT may run ahead by
    the larger of the minimum and what the scan reads in the given seconds at its rate so far; nothing holds once
    the scan has ended."""
    now = [100.0]
    scan = BackgroundScan(clock=lambda: now[0])
    mib = 1024 * 1024
    assert scan.behind(0, seconds=5, minimum=32 * mib), "not started"
    scan.advance(0)
    assert not scan.behind(0, seconds=5, minimum=32 * mib)
    assert not scan.behind(32 * mib, seconds=5, minimum=32 * mib)
    assert scan.behind(32 * mib + 1, seconds=5, minimum=32 * mib), "no rate yet: the minimum"
    now[0] += 1.0
    scan.advance(100 * mib)  # 100 MiB/s: 500 MiB in 5 s
    assert not scan.behind(600 * mib, seconds=5, minimum=32 * mib)
    assert scan.behind(600 * mib + 1, seconds=5, minimum=32 * mib)
    assert not scan.behind(132 * mib, seconds=0, minimum=32 * mib)
    assert scan.behind(132 * mib + 1, seconds=0, minimum=32 * mib)

    async def ends() -> ScanReport:
        return ScanReport(sha256="", size=0, format="jsonl", record_count=0)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(scan.run, ends)
            await scan.keep_within(10_000 * mib, seconds=0, minimum=0)
    assert not scan.behind(10_000 * mib, seconds=0, minimum=0), "an ended scan holds nothing"
