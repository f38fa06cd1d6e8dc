"""Imports end to end: every status, the contract's partial CSV, duplicates, errors, queueing, V3."""

from __future__ import annotations

import contextlib
import io
import sqlite3
import time
import zipfile
from pathlib import Path

import httpx2
import orjson
import pytest

from prolific_mcp.sandbox import Sandbox
from prolific_mcp.sandbox.config import SandboxConfig
from prolific_mcp.sandbox.store import DB_FILENAME

from .conftest import OBSERVABLE, client
from .support import (
    DATASETS,
    SCHEMA,
    contract_csv,
    create_dataset,
    get_dataset,
    get_import,
    import_and_wait,
    jsonl,
    put,
    record,
    upload,
    upload_url,
    wait_for,
    wait_import,
    watch_import,
)


def v3_settled(api: httpx2.Client, dataset_id: str) -> str:
    """Wait until a V3 dataset is READY or ERROR; returns which."""

    def check() -> str | None:
        status = str(get_dataset(api, dataset_id)["status"])
        return status if status in ("READY", "ERROR") else None

    return wait_for(check)


def test_complete_import_counts_and_progress(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    job = import_and_wait(api, ds["id"], "ok.jsonl", jsonl([record(i) for i in range(25)]))
    assert job["status"] == "complete"
    assert job["accepted_count"] == 25
    assert job["rejected_count"] == 0
    assert job["duplicate_count"] == 0
    assert job["errors"] == []
    assert job["processed_offset"] == 25
    assert job["written_count"] == 25
    assert job["duplicate_seen_count"] == 0
    assert job["rejected_seen_count"] == 0
    assert job["processing_started_at"] is not None
    assert "reason" not in job
    assert get_dataset(api, ds["id"])["total_datapoint_count"] == 25


def test_contract_csv_is_partial(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    job = import_and_wait(api, ds["id"], "prompts.csv", contract_csv())
    assert job["status"] == "partial"
    assert (job["accepted_count"], job["rejected_count"]) == (36, 4)
    errors = {e["record_index"]: e for e in job["errors"]}
    assert sorted(errors) == [4, 11, 19, 32]
    assert errors[4]["field"] == "prompt"
    assert "maximum length" in errors[4]["reason"]
    assert errors[11] == {
        "record_index": 11,
        "field": None,
        "reason": "Record missing required field: response",
    }
    assert errors[19]["field"] == "image"
    assert errors[32]["field"] == "image"
    assert get_dataset(api, ds["id"])["total_datapoint_count"] == 36


def test_raw_errors_and_record_indexes(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    body = b"\n".join(
        [
            orjson.dumps(record(0)),
            b"",
            b"{not json",
            orjson.dumps(record(1)),
            b"[1, 2]",
            orjson.dumps(record(2, image=5)),
        ]
    )
    job = import_and_wait(api, ds["id"], "mixed.jsonl", body)
    assert job["status"] == "partial"
    assert job["accepted_count"] == 2
    assert [(e["record_index"], e["field"]) for e in job["errors"]] == [(1, "_raw"), (3, "_raw"), (4, "image")]
    assert "Malformed JSON" in job["errors"][0]["reason"]
    assert job["processed_offset"] == 5


def test_non_strict_schema_accepts_missing_fields(sbx: Sandbox, api: httpx2.Client) -> None:
    schema = {"strict": False, "fields": {"text": {"type": "text"}, "extra": {"type": "metadata"}}}
    ds = create_dataset(api, sbx.workspace_id, schema=schema)
    body = jsonl([{"text": "a"}, {"text": "b", "extra": {"k": [1, 2]}}, {"text": "c", "unknown": 1}, {"text": None}])
    job = import_and_wait(api, ds["id"], "loose.jsonl", body)
    assert job["status"] == "complete"
    assert job["accepted_count"] == 4


def test_errors_capped_at_1000_counts_exact(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    records = [record(i, image="nope") if i % 2 else record(i) for i in range(3000)]
    job = import_and_wait(api, ds["id"], "many.jsonl", jsonl(records))
    assert job["status"] == "partial"
    assert job["rejected_count"] == 1500
    assert job["accepted_count"] == 1500
    assert len(job["errors"]) == 1000
    assert [e["record_index"] for e in job["errors"]] == list(range(1, 2000, 2))
    view = get_dataset(api, ds["id"])
    assert len(view["imports"][0]["errors"]) == 1000


def test_all_rejected_fails_but_keeps_errors(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    job = import_and_wait(api, ds["id"], "bad.jsonl", jsonl([record(i, batch="") for i in range(3)]))
    assert job["status"] == "failed"
    assert job["reason"] == "all 3 records were rejected; see errors for the first problem of each"
    assert job["accepted_count"] == 0
    assert job["rejected_count"] == 3
    assert [e["field"] for e in job["errors"]] == ["batch"] * 3


def test_whole_file_failures(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    cases = [
        ("array.jsonl", orjson.dumps([record(0), record(1)]), "JSON array"),
        ("empty.jsonl", b"", "empty"),
        ("blank.jsonl", b"\n\n  \n", "empty"),
        ("wide.csv", "prompt,response\nfoo,bar\n".encode("utf-16"), "UTF-16"),
        ("latin.jsonl", b'{"prompt": "caf\xe9"}\n', "UTF-8"),
        ("noheader.csv", b"foo,bar,https://a.example/x.png,g\nbaz,qux,https://a.example/y.png,h\n", "no header"),
        ("header-only.csv", b"prompt,response,image,batch\n", "no records"),
    ]
    for filename, body, needle in cases:
        job = import_and_wait(api, ds["id"], filename, body)
        assert job["status"] == "failed", filename
        assert needle in job["reason"], (filename, job["reason"])
        assert job["accepted_count"] == 0
    assert get_dataset(api, ds["id"])["total_datapoint_count"] == 0


def test_duplicates_within_and_across_files(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    first = import_and_wait(api, ds["id"], "a.jsonl", jsonl([record(0), record(1), record(0), record(2)]))
    assert first["status"] == "complete"
    assert (first["accepted_count"], first["duplicate_count"], first["written_count"]) == (4, 1, 3)
    # Key order and keys outside the schema do not change a record's identity.
    reordered = {
        "batch": "b0",
        "image": "https://cdn.example.net/0.png",
        "response": "Response 0",
        "prompt": "Prompt 0",
    }
    second = import_and_wait(api, ds["id"], "b.jsonl", jsonl([{**reordered, "note": "x"}, record(3)]))
    assert (second["accepted_count"], second["duplicate_count"], second["written_count"]) == (2, 1, 1)
    assert get_dataset(api, ds["id"])["total_datapoint_count"] == 4


def test_total_is_cumulative_and_imports_most_recent_first(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    ids = []
    for n in range(3):
        up = upload(api, ds["id"], f"part{n}.jsonl", jsonl([record(100 * n + i) for i in range(5)]))
        wait_import(api, ds["id"], up["import_id"])
        ids.append(up["import_id"])
    view = get_dataset(api, ds["id"])
    assert view["total_datapoint_count"] == 15
    assert [i["import_id"] for i in view["imports"]] == ids[::-1]


def test_pending_schema_released_by_first_schema(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id, schema=None)
    assert (ds["schema_version"], ds["schema"]) == (4, None)
    first = upload(api, ds["id"], "one.jsonl", jsonl([record(i) for i in range(3)]))
    second = upload(api, ds["id"], "two.csv", contract_csv())
    parked = wait_import(api, ds["id"], first["import_id"])
    assert parked["status"] == "pending_schema"
    assert "no schema" in parked["reason"]
    assert wait_import(api, ds["id"], second["import_id"])["status"] == "pending_schema"
    patched = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": SCHEMA})
    assert patched.status_code == 200
    assert "migration_job_id" not in patched.json()
    assert patched.json()["schema"] == SCHEMA
    done = wait_import(api, ds["id"], first["import_id"], done=("complete", "partial", "failed"))
    assert done["status"] == "complete"
    assert "reason" not in done
    released = wait_import(api, ds["id"], second["import_id"], done=("partial",))
    assert released["accepted_count"] == 36
    # The CSV's first three rows are the JSONL's three records: the same identity across formats.
    assert released["duplicate_count"] == 3
    assert get_dataset(api, ds["id"])["total_datapoint_count"] == 36


def test_paced_import_is_seen_queued_and_processing(paced: Sandbox, paced_api: httpx2.Client) -> None:
    ds = create_dataset(paced_api, paced.workspace_id)
    up = upload_url(paced_api, ds["id"], "prompts.csv")
    assert get_import(paced_api, ds["id"], up["import_id"])["status"] == "uninitialised"
    assert put(up["upload_url"], contract_csv(), "text/csv").status_code == 200
    job, seen = watch_import(paced_api, ds["id"], up["import_id"])
    assert seen == ["queued", "processing", "partial"]
    assert job["accepted_count"] == 36


def test_two_uploads_run_one_at_a_time_in_arrival_order(paced: Sandbox, paced_api: httpx2.Client) -> None:
    ds = create_dataset(paced_api, paced.workspace_id)
    a = upload_url(paced_api, ds["id"], "a.csv")
    b = upload_url(paced_api, ds["id"], "b.csv")
    # b arrives first (its PUT completes first), so it runs first.
    assert put(b["upload_url"], contract_csv(), "text/csv").status_code == 200
    assert put(a["upload_url"], contract_csv(), "text/csv").status_code == 200
    assert get_import(paced_api, ds["id"], a["import_id"])["status"] == "queued"
    job_b, seen_b = watch_import(paced_api, ds["id"], b["import_id"])
    assert seen_b[-1] == "partial"
    job_a, _ = watch_import(paced_api, ds["id"], a["import_id"])
    assert job_a["status"] == "partial"
    assert job_a["duplicate_count"] == 36
    assert job_a["processing_started_at"] >= job_b["updated_at"]
    view = get_dataset(paced_api, ds["id"])
    assert view["total_datapoint_count"] == 36
    assert [i["import_id"] for i in view["imports"]] == [b["import_id"], a["import_id"]]


def test_other_datasets_do_not_wait(paced: Sandbox, paced_api: httpx2.Client) -> None:
    one = create_dataset(paced_api, paced.workspace_id)
    two = create_dataset(paced_api, paced.workspace_id)
    up1 = upload(paced_api, one["id"], "x.jsonl", jsonl([record(1)]))
    up2 = upload(paced_api, two["id"], "x.jsonl", jsonl([record(1)]))
    wait_for(lambda: True if get_import(paced_api, two["id"], up2["import_id"])["status"] == "processing" else None)
    assert get_import(paced_api, one["id"], up1["import_id"])["status"] in ("processing", "complete")


def test_imports_of_many_datasets_take_turns_on_the_workers(tmp_path: Path) -> None:
    """Four datasets' imports at once, two workers (the default): never more than two `processing`, the others
    stay `queued` until one ends, and they start in arrival order (docs/sandbox.md, Imports at once).

    The statuses are sampled from the sandbox's database, one read transaction each: requests made one import at a
    time could see an import that has just ended and the one that took its worker as both processing."""
    state = tmp_path / "turns"
    with Sandbox.start(state_dir=state, pace=OBSERVABLE) as sandbox, client(sandbox) as api:
        assert sandbox.config.workers == 2
        datasets = [create_dataset(api, sandbox.workspace_id)["id"] for _ in range(4)]
        ups = [upload(api, ds, "x.jsonl", jsonl([record(i)]))["import_id"] for i, ds in enumerate(datasets)]
        most = 0
        waited = False
        counts: dict[str, int] = {}
        with contextlib.closing(sqlite3.connect(f"file:{state / DB_FILENAME}?mode=ro", uri=True)) as db:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rows = db.execute("SELECT status, count(*) FROM uploads WHERE kind = 'import' GROUP BY status")
                counts = dict(rows.fetchall())
                most = max(most, counts.get("processing", 0))
                waited = waited or (counts.get("processing", 0) == 2 and counts.get("queued", 0) > 0)
                if counts == {"complete": 4}:
                    break
                time.sleep(0.02)  # a sample every 20 ms: imports at this pace last at least 0.8 s
        assert counts == {"complete": 4}, counts
        assert (most, waited) == (2, True)
        jobs = [get_import(api, ds, up) for ds, up in zip(datasets, ups, strict=True)]
        started = [j["processing_started_at"] for j in jobs]
        assert started == sorted(started), "in arrival order"
        assert started[2] >= min(jobs[0]["updated_at"], jobs[1]["updated_at"]), "the third waited for a worker"


def test_workers_must_be_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        SandboxConfig(state_dir=tmp_path, workers=0)


def test_v3_csv_goes_ready(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.legacy_workspace_id, schema=None)
    body = b"id,text,META_source,META_TASK_GROUP_ID\n1,hello,web,g1\n2,world,web,g1\n3,again,app,g2\n"
    upload(api, ds["id"], "v3.csv", body)
    assert v3_settled(api, ds["id"]) == "READY"
    assert api.get(f"{DATASETS}/{ds['id']}/status").json() == {"status": "READY"}
    view = get_dataset(api, ds["id"])
    assert view["total_datapoint_count"] == 3
    assert view["has_predetermined_grouping_id"] is True
    assert view["filename"] == "v3.csv"
    assert view["imports"] is None
    # A second upload replaces the rows; without META_TASK_GROUP_ID there is no predetermined grouping.
    upload(api, ds["id"], "again.csv", b"text,META_note\na,x\nb,y\n")
    wait_for(lambda: True if get_dataset(api, ds["id"])["filename"] == "again.csv" else None)
    view = get_dataset(api, ds["id"])
    assert (view["status"], view["total_datapoint_count"], view["has_predetermined_grouping_id"]) == ("READY", 2, False)


def test_v3_zip_and_errors(sbx: Sandbox, api: httpx2.Client) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("folder/data.csv", "text,META_TASK_GROUP_ID\na,1\nb,1\n")
    ds = create_dataset(api, sbx.legacy_workspace_id, schema=None)
    upload(api, ds["id"], "data.zip", buf.getvalue())
    wait_for(lambda: True if get_dataset(api, ds["id"])["status"] == "READY" else None)
    assert get_dataset(api, ds["id"])["total_datapoint_count"] == 2
    for filename, body in [("bad.csv", b""), ("bad.zip", b"not a zip"), ("rows.csv", b"a,b\n1,2,3\n")]:
        broken = create_dataset(api, sbx.legacy_workspace_id, schema=None)
        upload(api, broken["id"], filename, body)
        assert v3_settled(api, broken["id"]) == "ERROR", filename
        assert get_dataset(api, broken["id"])["total_datapoint_count"] == 0
