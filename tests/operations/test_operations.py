"""The operations called directly: waits, set_schema's refusals, appends waiting out a 409, the ledger's resume
rules and the stored outcome of an identical upload, against an in-memory fake of the API client."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from prolific_mcp.api.errors import RateLimitedError, ServerError
from prolific_mcp.api.models import AppendResult, ImportJob, MigrationJob
from prolific_mcp.operations import appends, render, schemas, uploads
from prolific_mcp.operations.deps import Deps, OperationError
from prolific_mcp.uploads.ledger import Ledger, UploadKey
from tests.operations.conftest import DS, FIELDS, Clock, FakeClient, conflict, dataset

pytestmark = pytest.mark.anyio


async def test_a_calls_wait_defaults_and_is_clamped_to_the_maximum(make_deps: Callable[..., Deps]) -> None:
    deps = make_deps(default_wait=5, max_wait=30)
    assert (deps.clamp_wait(None), deps.clamp_wait(100), deps.clamp_wait(-3), deps.clamp_wait(12.5)) == (5, 30, 0, 12.5)


def test_the_next_call_carries_the_configured_wait() -> None:
    call = render.next_call(DS, "imp-1", uploading=False, wait=12)
    assert (call.tool, call.arguments) == (
        "get_import_status",
        {"dataset_id": DS, "import_id": "imp-1", "wait_seconds": 12},
    )
    assert render.next_call(DS, None, uploading=True, wait=7.5).arguments["wait_seconds"] == 7.5


def listed(fields: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """Fields keyed by name as the list of {key, type, label} the operations take."""
    return [{"key": k, **v} for k, v in fields.items()]


# --- set_schema --------------------------------------------------------------------------------------------------


async def test_set_schema_refuses_a_v3_dataset(fake: FakeClient, make_deps: Callable[..., Deps]) -> None:
    fake.datasets[DS] = dataset(v4=False)
    with pytest.raises(OperationError, match="legacy V3 dataset, which has no schema"):
        await schemas.set_schema(make_deps(), DS, listed(FIELDS), False)
    assert not any(c.startswith("update_schema") for c in fake.calls)


async def test_set_schema_refuses_to_move_the_task_group_on_data(
    fake: FakeClient, make_deps: Callable[..., Deps]
) -> None:
    fake.datasets[DS] = dataset(total=10, fields={**FIELDS, "group": {"type": "task_group_id"}})
    moved = listed({**FIELDS, "other": {"type": "task_group_id"}})
    with pytest.raises(OperationError, match=r"task_group_id field cannot move \(group → other\)"):
        await schemas.set_schema(make_deps(), DS, moved, False, allow_destructive=True)
    assert not any(c.startswith("update_schema") for c in fake.calls)


async def test_a_destructive_change_on_data_needs_allow_destructive(
    fake: FakeClient, make_deps: Callable[..., Deps]
) -> None:
    fake.datasets[DS] = dataset(total=3)
    fewer = listed({"review": FIELDS["review"]})
    with pytest.raises(OperationError, match="allow_destructive=true"):
        await schemas.set_schema(make_deps(), DS, fewer, False)
    dry = await schemas.set_schema(make_deps(), DS, fewer, False, dry_run=True)
    assert not dry.applied and "Nothing was changed" in dry.text
    assert not any(c.startswith("update_schema") for c in fake.calls)


async def test_the_migration_is_followed_through_transient_errors(
    fake: FakeClient, make_deps: Callable[..., Deps], clock: Clock
) -> None:
    fake.datasets[DS] = dataset(total=3)
    fake.migration_job_id = "mig-1"
    fake.migrations = [
        MigrationJob(job_id="mig-1", status="processing"),
        ServerError("Prolific failed (HTTP 503)", status=503),
        MigrationJob(job_id="mig-1", status="complete", reprocessed_count=3),
    ]
    reported: list[tuple[float, str]] = []

    async def progress(value: float, message: str) -> None:
        reported.append((value, message))

    result = await schemas.set_schema(
        make_deps(), DS, listed({**FIELDS, "extra": {"type": "text"}}), False, wait_seconds=60, progress=progress
    )
    assert result.applied and result.finished and result.migration is not None
    assert result.migration.status == "complete"
    assert "Migration mig-1 complete: 3 datapoints re-checked." in result.text
    assert reported[-1][0] == 100.0 and len(clock.sleeps) == 2


# --- append_records ----------------------------------------------------------------------------------------------


async def test_an_append_waits_out_a_409_then_succeeds(
    fake: FakeClient, make_deps: Callable[..., Deps], clock: Clock
) -> None:
    fake.datasets[DS] = dataset()
    fake.appends = [conflict(), conflict(), AppendResult(accepted_count=2, rejected_count=0, duplicate_count=0)]
    result = await appends.append_records(make_deps(), DS, [{"review": "a"}, {"review": "b"}], wait_seconds=60)
    assert result.accepted_count == 2 and len(clock.sleeps) == 2
    assert result.text.startswith(f"Appended to {DS}: 2 records accepted")


async def test_an_append_blocked_past_the_wait_says_to_call_again(
    fake: FakeClient, make_deps: Callable[..., Deps], clock: Clock
) -> None:
    fake.datasets[DS] = dataset()
    fake.appends = [conflict()]
    with pytest.raises(OperationError, match="call append_records again with the same records"):
        await appends.append_records(make_deps(), DS, [{"review": "a"}], wait_seconds=10)
    assert 0 < sum(clock.sleeps) <= 10 + 1e-9, "the wait given, and no more (float sums aside)"


async def test_append_limits_are_checked_before_anything_is_sent(
    fake: FakeClient, make_deps: Callable[..., Deps]
) -> None:
    with pytest.raises(OperationError, match="1,001 records is over the 1,000"):
        await appends.append_records(make_deps(), DS, [{"a": i} for i in range(1001)])
    with pytest.raises(OperationError, match="over 1 MiB"):
        await appends.append_records(make_deps(), DS, [{"a": "x" * 600_000}, {"a": "y" * 600_000}])
    with pytest.raises(OperationError, match="records must be a list of objects"):
        await appends.append_records(make_deps(), DS, json.dumps([1, 2]))
    assert fake.calls == []


async def test_append_rejections_are_grouped_with_fixes(fake: FakeClient, make_deps: Callable[..., Deps]) -> None:
    fake.datasets[DS] = dataset()
    errors = [{"record_index": i, "field": None, "reason": "Record missing required field: review"} for i in (0, 2)]
    fake.appends = [AppendResult.model_validate({"accepted_count": 1, "rejected_count": 2, "errors": errors})]
    result = await appends.append_records(make_deps(), DS, [{"x": 1}, {"review": "ok"}, {"x": 2}])
    (group,) = result.groups
    assert (group.field, group.count, group.records) == ("review", 2, [1, 3])
    assert "give every record a value for 'review'" in group.fix


# --- upload_file: the ledger's resume rules and the stored outcome ------------------------------------------------


def _upload(ledger: Ledger, path: Path, state: str, outcome: dict[str, object] | None = None) -> None:
    """Record an earlier upload of `path` to DS in the ledger, as the job would have."""
    data = path.read_bytes()
    key = UploadKey("sandbox", "user-1", DS, hashlib.sha256(data).hexdigest(), len(data))
    row = ledger.record_url_issued(
        key, import_id="imp-1", filename=path.name, local_path=str(path), fmt="jsonl", record_count=3
    )
    ledger.set_state(row.id, state, outcome)  # type: ignore[arg-type]


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"review": "a"}\n{"nope": 1}\n{"review": "c"}\n', encoding="utf-8")
    return path


async def test_an_identical_complete_upload_returns_the_stored_outcome(
    fake: FakeClient, ledger: Ledger, make_deps: Callable[..., Deps], tmp_path: Path
) -> None:
    fake.datasets[DS] = dataset(total=3)
    path = _file(tmp_path)
    _upload(ledger, path, "complete", {"accepted_count": 3, "rejected_count": 0, "duplicate_count": 0})
    result = await uploads.upload_file(make_deps(), DS, str(path))
    assert result.from_ledger and result.finished and result.status == "complete"
    assert result.text.startswith(f"This exact file was already imported into {DS} (import imp-1)")
    assert not any(c.startswith("get_import") for c in fake.calls)


async def test_a_stored_partial_outcome_writes_the_rejected_file_once(
    fake: FakeClient, ledger: Ledger, make_deps: Callable[..., Deps], tmp_path: Path
) -> None:
    fake.datasets[DS] = dataset(total=2)
    path = _file(tmp_path)
    errors = [{"record_index": 1, "field": None, "reason": "Record missing required field: review"}]
    _upload(ledger, path, "partial", {"accepted_count": 2, "rejected_count": 1, "errors": errors})
    first = await uploads.upload_file(make_deps(), DS, str(path))
    assert first.rejected_file is not None and Path(first.rejected_file).read_text() == '{"nope": 1}\n'
    assert "1 of 1 rejected records written to" in first.text
    again = await uploads.upload_file(make_deps(), DS, str(path))
    assert again.rejected_file == first.rejected_file and again.rejected_written is None
    assert sorted(p.name for p in tmp_path.iterdir() if "rejected" in p.name) == ["reviews.rejected.jsonl"]


async def test_an_upload_in_flight_in_another_live_process_is_refused(
    fake: FakeClient, ledger: Ledger, make_deps: Callable[..., Deps], tmp_path: Path
) -> None:
    fake.datasets[DS] = dataset()
    path = _file(tmp_path)
    _upload(ledger, path, "uploading")
    with sqlite3.connect(ledger.path) as db:  # recorded by a process on another host, moments ago
        db.execute("UPDATE uploads SET owner='another-host:4242'")
    with pytest.raises(OperationError, match=r"another server process is uploading this file.*get_import_status"):
        await uploads.upload_file(make_deps(), DS, str(path))


async def test_an_uploaded_import_is_watched_not_uploaded_again(
    fake: FakeClient, ledger: Ledger, make_deps: Callable[..., Deps], tmp_path: Path
) -> None:
    fake.datasets[DS] = dataset(total=3)
    fake.imports["imp-1"] = [
        ImportJob(import_id="imp-1", status="processing", processed_offset=1),
        ImportJob(import_id="imp-1", status="complete", accepted_count=3, rejected_count=0),
    ]
    path = _file(tmp_path)
    _upload(ledger, path, "uploaded")
    result = await uploads.upload_file(make_deps(), DS, str(path), wait_seconds=60)
    assert result.finished and result.status == "complete" and result.import_id == "imp-1"
    assert not result.from_ledger and "Complete: reviews.jsonl" in result.text


async def test_get_import_status_hands_off_with_the_configured_wait(
    fake: FakeClient, make_deps: Callable[..., Deps], clock: Clock
) -> None:
    fake.imports["imp-9"] = [ImportJob(import_id="imp-9", status="processing", processed_offset=5)]
    result = await uploads.get_import_status(make_deps(default_wait=7), DS, "imp-9", wait_seconds=0)
    assert not result.finished and clock.sleeps == []
    assert result.next_call is not None and result.next_call.arguments == {
        "dataset_id": DS,
        "import_id": "imp-9",
        "wait_seconds": 7,
    }
    assert result.text.startswith("Still going after the wait (processing imp-9: 5 records so far).")


async def test_get_import_status_rides_out_a_rate_limit_within_the_wait(
    fake: FakeClient, make_deps: Callable[..., Deps], clock: Clock
) -> None:
    fake.datasets[DS] = dataset(total=3)
    fake.imports["imp-9"] = [
        RateLimitedError.after(4),
        ImportJob(import_id="imp-9", status="complete", accepted_count=3, rejected_count=0),
    ]
    result = await uploads.get_import_status(make_deps(), DS, "imp-9", wait_seconds=30)
    assert result.finished and clock.sleeps == [4.0]
