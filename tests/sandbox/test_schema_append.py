"""Schema changes (PATCH, migrations) and append-datapoints."""

from __future__ import annotations

from typing import Any

import httpx2
import orjson

from prolific_mcp.records import record_digest
from prolific_mcp.sandbox import Pace, Sandbox
from prolific_mcp.sandbox.importer import canonical

from .conftest import client
from .support import (
    DATASETS,
    SCHEMA,
    create_dataset,
    error_of,
    get_dataset,
    import_and_wait,
    jsonl,
    put,
    record,
    upload_url,
    wait_for,
)

NDJSON = {"Content-Type": "application/x-ndjson"}


def wait_migration(api: httpx2.Client, dataset_id: str, job_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        response = api.get(f"{DATASETS}/{dataset_id}/schema-migrations/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] != "processing" else None

    return wait_for(check)


def test_identity_is_the_shared_record_digest() -> None:
    for value in ({"a": "x", "b": 1}, {"b": 1, "a": "x"}, {"é": ["ü", None, 1.5]}, {}):
        data, digest = canonical(value)
        assert digest == record_digest(value)
        assert orjson.loads(data) == value


def test_patch_v3_is_400(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.legacy_workspace_id, schema=None)
    response = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": SCHEMA})
    assert response.status_code == 400
    assert "V3" in error_of(response)["detail"]


def test_patch_validation(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    missing = api.patch(f"{DATASETS}/{ds['id']}", json={})
    assert missing.status_code == 400
    assert "schema" in error_of(missing)["detail"]
    bad = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": {"strict": True, "fields": {"a": {"type": "nope"}}}})
    assert bad.status_code == 400
    assert "schema.fields.a" in error_of(bad)["detail"]
    emptied = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": {"strict": True, "fields": {}}})
    assert emptied.status_code == 400


def test_first_schema_on_an_empty_v4_dataset(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id, schema=None)
    assert (ds["schema_version"], ds["schema"]) == (4, None)
    patched = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": SCHEMA})
    assert patched.status_code == 200
    body = patched.json()
    assert body["schema"] == SCHEMA
    assert "migration_job_id" not in body
    assert body["id"] == ds["id"]


def test_schema_change_migrates(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    import_and_wait(api, ds["id"], "a.jsonl", jsonl([record(i) for i in range(10)]))
    new_schema = {
        "strict": False,
        "fields": {
            "prompt": {"type": "text", "label": "Question"},
            "image": {"type": "image_url"},
            "batch": {"type": "task_group_id"},
            "note": {"type": "metadata"},
        },
    }
    patched = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": new_schema})
    assert patched.status_code == 200
    job_id = patched.json()["migration_job_id"]
    assert patched.json()["schema"] == new_schema
    job = wait_migration(api, ds["id"], job_id)
    assert job["status"] == "complete"
    assert (job["reprocessed_count"], job["failed_count"], job["errors"]) == (10, 0, [])
    assert job["schema_version"] == 2
    assert job["dataset_id"] == ds["id"]
    assert job["job_id"] == job_id
    assert get_dataset(api, ds["id"])["total_datapoint_count"] == 10
    # Identities follow the new schema: a record that differs only in the dropped field is now a duplicate.
    again = import_and_wait(api, ds["id"], "b.jsonl", jsonl([record(3, response="something else")]))
    assert (again["accepted_count"], again["duplicate_count"]) == (1, 1)


def test_migration_nulls_values_that_no_longer_validate(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    import_and_wait(api, ds["id"], "a.jsonl", jsonl([record(i) for i in range(6)]))
    as_url = {
        "strict": True,
        "fields": {
            "prompt": {"type": "image_url"},
            "response": {"type": "text"},
            "batch": {"type": "task_group_id"},
        },
    }
    job_id = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": as_url}).json()["migration_job_id"]
    job = wait_migration(api, ds["id"], job_id)
    assert job["status"] == "partial"
    assert job["reprocessed_count"] == 6
    assert job["failed_count"] == 6
    assert [(e["record_index"], e["field"]) for e in job["errors"]] == [(i, "prompt") for i in range(6)]
    assert all("set to null" in e["reason"] for e in job["errors"])
    assert get_dataset(api, ds["id"])["total_datapoint_count"] == 6
    # Records that became identical keep their datapoints; the identity is shared.
    fewer = {"strict": False, "fields": {"batch": {"type": "task_group_id"}}}
    job = wait_migration(
        api, ds["id"], api.patch(f"{DATASETS}/{ds['id']}", json={"schema": fewer}).json()["migration_job_id"]
    )
    assert job["status"] == "complete"
    assert get_dataset(api, ds["id"])["total_datapoint_count"] == 6
    dup = import_and_wait(api, ds["id"], "c.jsonl", jsonl([{"batch": "b0"}, {"batch": "new"}]))
    assert (dup["duplicate_count"], dup["written_count"]) == (1, 1)


def test_task_group_field_cannot_change_once_there_is_data(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    moved = {"strict": True, "fields": {"prompt": {"type": "task_group_id"}, "batch": {"type": "metadata"}}}
    removed = {"strict": True, "fields": {"prompt": {"type": "text"}}}
    # No datapoints yet: allowed.
    patched = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": moved})
    assert patched.status_code == 200
    wait_migration(api, ds["id"], patched.json()["migration_job_id"])
    import_and_wait(api, ds["id"], "a.jsonl", jsonl([{"prompt": "g1", "batch": "x"}]))
    for schema in (SCHEMA, removed):
        response = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": schema})
        assert response.status_code == 400
        assert "task_group_id" in str(error_of(response)["detail"])


def test_patch_conflicts_while_a_migration_runs(tmp_path: Any) -> None:
    with Sandbox.start(state_dir=tmp_path, pace=Pace(queued=0, processing=30)) as sandbox, client(sandbox) as api:
        ds = create_dataset(api, sandbox.workspace_id, schema={"strict": False, "fields": {"a": {"type": "text"}}})
        first = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": SCHEMA})
        job_id = first.json()["migration_job_id"]
        response = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": SCHEMA})
        assert response.status_code == 409
        assert job_id in error_of(response)["detail"]
        assert api.get(f"{DATASETS}/{ds['id']}/schema-migrations/{job_id}").json()["status"] == "processing"
        appended = api.post(f"{DATASETS}/{ds['id']}/datapoints", content=jsonl([record(1)]), headers=NDJSON)
        assert appended.status_code == 409


def test_append(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    body = jsonl([record(i) for i in range(3)])
    response = api.post(f"{DATASETS}/{ds['id']}/datapoints", content=body, headers=NDJSON)
    assert response.status_code == 200
    assert response.json() == {"accepted_count": 3, "rejected_count": 0, "duplicate_count": 0, "errors": []}
    again = api.post(f"{DATASETS}/{ds['id']}/datapoints", content=body, headers=NDJSON).json()
    assert (again["accepted_count"], again["duplicate_count"]) == (3, 3)
    mixed = b"\n".join([orjson.dumps(record(9)), b"", b"nope", orjson.dumps(record(10, prompt=""))])
    result = api.post(f"{DATASETS}/{ds['id']}/datapoints", content=mixed, headers=NDJSON).json()
    assert result["accepted_count"] == 2
    assert result["rejected_count"] == 1
    assert [(e["record_index"], e["field"]) for e in result["errors"]] == [(1, "_raw")]
    assert get_dataset(api, ds["id"])["total_datapoint_count"] == 5
    within = jsonl([record(20), record(20)])
    assert api.post(f"{DATASETS}/{ds['id']}/datapoints", content=within, headers=NDJSON).json()["duplicate_count"] == 1


def test_append_limits_and_refusals(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    url = f"{DATASETS}/{ds['id']}/datapoints"
    exactly = api.post(url, content=jsonl([record(i) for i in range(1000)]), headers=NDJSON)
    assert exactly.status_code == 200
    assert exactly.json()["accepted_count"] == 1000
    too_many = api.post(url, content=jsonl([record(5000 + i) for i in range(1001)]), headers=NDJSON)
    assert too_many.status_code == 400
    assert "at most 1,000 records" in error_of(too_many)["detail"]
    assert get_dataset(api, ds["id"])["total_datapoint_count"] == 1000
    csv = api.post(url, content=b"prompt\nx\n", headers={"Content-Type": "text/csv"})
    assert csv.status_code == 415
    array = api.post(url, content=orjson.dumps([record(1)]), headers=NDJSON)
    assert array.status_code == 400
    assert "JSON array" in error_of(array)["detail"]
    empty = api.post(url, content=b"", headers=NDJSON)
    assert empty.status_code == 400
    v3 = create_dataset(api, sbx.legacy_workspace_id, schema=None)
    assert api.post(f"{DATASETS}/{v3['id']}/datapoints", content=jsonl([record(1)]), headers=NDJSON).status_code == 400
    bare = create_dataset(api, sbx.workspace_id, schema=None)
    no_schema = api.post(f"{DATASETS}/{bare['id']}/datapoints", content=jsonl([record(1)]), headers=NDJSON)
    assert no_schema.status_code == 400
    assert "no schema" in error_of(no_schema)["detail"]


def test_append_conflicts_while_an_import_is_queued_or_processing(tmp_path: Any) -> None:
    with Sandbox.start(state_dir=tmp_path, pace=Pace(queued=0.5, processing=30)) as sandbox, client(sandbox) as api:
        ds = create_dataset(api, sandbox.workspace_id)
        up = upload_url(api, ds["id"], "a.jsonl")
        url = f"{DATASETS}/{ds['id']}/datapoints"
        # An uninitialised import (URL issued, nothing PUT) does not block appends.
        assert api.post(url, content=jsonl([record(1)]), headers=NDJSON).status_code == 200
        assert put(up["upload_url"], jsonl([record(2)]), up["content_type"]).status_code == 200
        queued = api.post(url, content=jsonl([record(3)]), headers=NDJSON)
        assert queued.status_code == 409
        assert "in progress" in error_of(queued)["detail"]
        wait_for(
            lambda: (
                True
                if api.get(f"{DATASETS}/{ds['id']}/imports/{up['import_id']}").json()["status"] == "processing"
                else None
            )
        )
        assert api.post(url, content=jsonl([record(3)]), headers=NDJSON).status_code == 409
