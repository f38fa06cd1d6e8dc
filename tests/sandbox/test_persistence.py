"""Stopping and starting a sandbox on the same state folder: nothing is lost, interrupted work resumes."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from prolific_mcp.sandbox import Pace, Sandbox, SandboxStartError
from prolific_mcp.sandbox.store import DB_FILENAME

from .conftest import client
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
)


def with_origin(url: str, origin: str) -> str:
    parts = urlsplit(url)
    return f"{origin}{parts.path}?{parts.query}"


def test_state_survives_a_restart(tmp_path: Path) -> None:
    with Sandbox.start(state_dir=tmp_path, pace="fast") as first, client(first) as api:
        workspace_id, user_id = first.workspace_id, first.user_id
        ds = create_dataset(api, workspace_id)
        done = import_and_wait(api, ds["id"], "a.csv", contract_csv())
        pending = upload_url(api, ds["id"], "later.jsonl")
        batch = first.seed_batch(workspace_id, ds["id"], name="kept")
        before = get_dataset(api, ds["id"])
    with Sandbox.start(state_dir=tmp_path, pace="fast") as second, client(second) as api:
        assert (second.workspace_id, second.user_id) == (workspace_id, user_id)
        after = get_dataset(api, ds["id"])
        assert after == before
        assert get_import(api, ds["id"], done["import_id"]) == done
        batches = api.get("/api/v1/data-collection/batches", params={"workspace_id": workspace_id}).json()
        assert [b["id"] for b in batches["results"]] == [batch["id"]]
        # A URL issued before the restart is still valid (the signing secret is part of the state).
        late = with_origin(pending["upload_url"], second.s3_url)
        assert put(late, jsonl([record(77)]), pending["content_type"]).status_code == 200
        assert wait_import(api, ds["id"], pending["import_id"])["status"] == "complete"
        assert get_dataset(api, ds["id"])["total_datapoint_count"] == 37


def test_interrupted_import_resumes_without_double_counting(tmp_path: Path) -> None:
    records = [record(i) for i in range(3000)]
    for i in range(0, 3000, 7):
        records[i] = record(i, image="not a url")
    for i in range(5, 3000, 11):
        records[i] = record(i - 1) if (i - 1) % 7 else record(i)
    body = jsonl(records)
    slow = Pace(queued=0, processing=0, records_per_second=2000)
    with Sandbox.start(state_dir=tmp_path / "a", pace="fast") as reference, client(reference) as api:
        ds = create_dataset(api, reference.workspace_id)
        expected = import_and_wait(api, ds["id"], "big.jsonl", body)
    assert expected["status"] == "partial"
    with Sandbox.start(state_dir=tmp_path / "b", pace=slow, chunk_records=200) as first, client(first) as api:
        ds = create_dataset(api, first.workspace_id)
        up = upload(api, ds["id"], "big.jsonl", body)

        def midway() -> dict[str, object] | None:
            job = get_import(api, ds["id"], up["import_id"])
            return job if job["status"] == "processing" and 0 < job["processed_offset"] < 3000 else None

        progress = wait_for(midway)
        assert (
            progress["written_count"] + progress["duplicate_seen_count"] + progress["rejected_seen_count"]
            == (progress["processed_offset"])
        )
    with Sandbox.start(state_dir=tmp_path / "b", pace="fast") as second, client(second) as api:
        job = wait_import(api, ds["id"], up["import_id"])
        for key in ("status", "accepted_count", "rejected_count", "duplicate_count", "written_count", "errors"):
            assert job[key] == expected[key], key
        assert job["processed_offset"] == 3000
        assert job["processing_started_at"] == progress["processing_started_at"]
        assert get_dataset(api, ds["id"])["total_datapoint_count"] == expected["written_count"]


def test_queued_and_processing_work_continues_after_restart(tmp_path: Path) -> None:
    held = Pace(queued=30, processing=0)
    with Sandbox.start(state_dir=tmp_path, pace=held) as first, client(first) as api:
        ds = create_dataset(api, first.workspace_id)
        up = upload(api, ds["id"], "a.jsonl", jsonl([record(1), record(2)]))
        assert get_import(api, ds["id"], up["import_id"])["status"] == "queued"
        v3 = create_dataset(api, first.legacy_workspace_id, schema=None)
        upload(api, v3["id"], "v3.csv", b"text\nhello\n")
        assert get_dataset(api, v3["id"])["status"] == "PROCESSING"
    with Sandbox.start(state_dir=tmp_path, pace="fast") as second, client(second) as api:
        assert wait_import(api, ds["id"], up["import_id"])["accepted_count"] == 2
        wait_for(lambda: True if get_dataset(api, v3["id"])["status"] == "READY" else None)


def test_interrupted_migration_finishes_after_restart(tmp_path: Path) -> None:
    with Sandbox.start(state_dir=tmp_path, pace="fast") as first, client(first) as api:
        ds = create_dataset(api, first.workspace_id)
        import_and_wait(api, ds["id"], "a.jsonl", jsonl([record(i) for i in range(20)]))
    with Sandbox.start(state_dir=tmp_path, pace=Pace(queued=0, processing=30)) as held, client(held) as api:
        loose = {**SCHEMA, "strict": False}
        job_id = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": loose}).json()["migration_job_id"]
        status = api.get(f"{DATASETS}/{ds['id']}/schema-migrations/{job_id}").json()
        assert status["status"] == "processing"
    with Sandbox.start(state_dir=tmp_path, pace="fast") as second, client(second) as api:

        def finished() -> dict[str, object] | None:
            body = api.get(f"{DATASETS}/{ds['id']}/schema-migrations/{job_id}").json()
            return body if body["status"] != "processing" else None

        job = wait_for(finished)
        assert (job["status"], job["reprocessed_count"], job["failed_count"]) == ("complete", 20, 0)


def test_completed_put_not_yet_recorded_is_queued_on_start(tmp_path: Path) -> None:
    with Sandbox.start(state_dir=tmp_path, pace="fast") as first, client(first) as api:
        ds = create_dataset(api, first.workspace_id)
        up = upload_url(api, ds["id"], "a.jsonl")
    # As if the sandbox died between storing the object and recording the PUT.
    objects = tmp_path / "objects"
    (objects / f"{up['import_id']}.bin").write_bytes(jsonl([record(1), record(2), record(3)]))
    (objects / "leftover.1234.part").write_bytes(b"half a body")
    with Sandbox.start(state_dir=tmp_path, pace="fast") as second, client(second) as api:
        assert wait_import(api, ds["id"], up["import_id"])["accepted_count"] == 3
        assert not (objects / "leftover.1234.part").exists()


def test_restart_method_keeps_hooks_and_ports(tmp_path: Path) -> None:
    with Sandbox.start(state_dir=tmp_path, pace="fast") as sandbox:
        url, s3_url = sandbox.url, sandbox.s3_url
        faults, requests, clock = sandbox.faults, sandbox.requests, sandbox.clock
        with client(sandbox) as api:
            ds = create_dataset(api, sandbox.workspace_id)
        sandbox.faults.add("GET /api/v1/users/me/", status=503)
        sandbox.restart()
        assert (sandbox.faults, sandbox.requests, sandbox.clock) == (faults, requests, clock)
        assert sandbox.url == url
        assert sandbox.s3_url == s3_url
        with client(sandbox) as api:
            assert api.get("/api/v1/users/me/").status_code == 503
            assert get_dataset(api, ds["id"])["id"] == ds["id"]


def test_state_folder_copy_is_a_snapshot(tmp_path: Path) -> None:
    with Sandbox.start(state_dir=tmp_path / "one", pace="fast") as first, client(first) as api:
        ds = create_dataset(api, first.workspace_id)
        import_and_wait(api, ds["id"], "a.jsonl", jsonl([record(1)]))
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    with Sandbox.start(state_dir=tmp_path / "two", pace="fast") as copy, client(copy) as api:
        assert get_dataset(api, ds["id"])["total_datapoint_count"] == 1
        raw = orjson.loads(api.get(f"{DATASETS}/{ds['id']}").content)
        assert raw["imports"][0]["status"] == "complete"


def test_one_sandbox_per_state_folder(tmp_path: Path) -> None:
    with (
        Sandbox.start(state_dir=tmp_path, pace="fast"),
        pytest.raises(SandboxStartError, match="in use by another sandbox"),
    ):
        Sandbox.start(state_dir=tmp_path, pace="fast")
    with Sandbox.start(state_dir=tmp_path, pace="fast") as again:
        assert again.running


def test_unusable_state_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SandboxStartError, match="cannot use the state folder"):
        Sandbox.start(state_dir=blocker / "state", pace="fast")


def test_a_state_folder_from_before_the_second_workspace_gets_it(tmp_path: Path) -> None:
    """A state folder written before workspaces had a typed flag: on the next start every existing workspace is
    typed, the workspace without typed datasets is added, and the datasets already there keep their versions."""
    with Sandbox.start(state_dir=tmp_path, pace="fast") as first, client(first) as api:
        workspace_id = first.workspace_id
        v4 = create_dataset(api, workspace_id)
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    with conn:
        conn.execute("DELETE FROM workspaces WHERE id = (SELECT value FROM meta WHERE key = 'legacy_workspace_id')")
        conn.execute("DELETE FROM meta WHERE key = 'legacy_workspace_id'")
        conn.execute("ALTER TABLE workspaces DROP COLUMN typed")
        old_v3 = "0192a3b5-e8f9-7a0b-1c2d-00000000003a"
        conn.execute(
            "INSERT INTO datasets (id, name, workspace_id, created_by, created_at, version, v3_status)"
            " SELECT ?, 'old v3', ?, created_by, created_at, 3, 'UNINITIALISED' FROM datasets LIMIT 1",
            (old_v3, workspace_id),
        )
    conn.close()
    with Sandbox.start(state_dir=tmp_path, pace="fast") as second, client(second) as api:
        assert second.workspace_id == workspace_id
        legacy = second.legacy_workspace_id
        listed = [w["id"] for w in api.get("/api/v1/workspaces/").json()["results"]]
        assert listed == [workspace_id, legacy]
        assert create_dataset(api, workspace_id, schema=None)["schema_version"] == 4
        assert create_dataset(api, legacy, schema=None)["schema_version"] == 3
        assert get_dataset(api, v4["id"])["schema"] == SCHEMA
        assert get_dataset(api, old_v3)["schema_version"] == 3
    with Sandbox.start(state_dir=tmp_path, pace="fast") as third:
        assert third.legacy_workspace_id == legacy  # added once
