"""The response models accept what Prolific may send: both schema_version forms, missing and extra fields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from prolific_mcp.api.models import (
    IMPORT_TERMINAL_STATUSES,
    AppendResult,
    Batch,
    CreateDatasetRequest,
    Dataset,
    DatasetSchema,
    DatasetStatus,
    ImportJob,
    MigrationJob,
    SchemaField,
    UpdateSchemaRequest,
    UploadTarget,
    V3Baseline,
    content_type_for,
)

from .conftest import SIGNATURE, assert_no_leak

V4 = {
    "id": "0192a3b5-e8f9-7a0b-1c2d-3e4f5a6b7c8d",
    "name": "Reviews",
    "created_at": "2026-09-01T12:00:00Z",
    "created_by": "u1",
    "workspace_id": "6278acb09062db3b35bcbeb0",
    "total_datapoint_count": 10,
    "schema_version": 4,
    "schema": {"strict": True, "fields": {"text": {"type": "text", "label": "Text"}, "src": {"type": "metadata"}}},
    "imports": [{"import_id": "imp-2", "status": "queued"}, {"import_id": "imp-1", "status": "complete"}],
}


@pytest.mark.parametrize(("raw", "version"), [(4, 4), ("4", 4), (3, 3), ("3", 3), ("v4", 4), (None, None), ("x", None)])
def test_schema_version_is_normalised(raw: object, version: int | None) -> None:
    assert Dataset.model_validate({**V4, "schema_version": raw}).schema_version == version


def test_v4_dataset_view() -> None:
    dataset = Dataset.model_validate({**V4, "future_field": {"x": 1}})
    assert dataset.is_v4
    assert dataset.dataset_schema is not None and dataset.dataset_schema.strict
    assert dataset.dataset_schema.fields["src"] == SchemaField(type="metadata")
    assert [job.import_id for job in dataset.imports or []] == ["imp-2", "imp-1"]
    assert dataset.model_extra == {"future_field": {"x": 1}}
    assert dataset.status is None and dataset.filename is None
    assert dataset.model_dump()["schema"]["strict"] is True


def test_v3_dataset_view_and_minimal_dataset() -> None:
    v3 = Dataset.model_validate(
        {
            "id": "d3",
            "name": "legacy",
            "schema_version": "3",
            "status": "UNINITIALISED",
            "filename": None,
            "has_predetermined_grouping_id": None,
            "imports": None,
        }
    )
    assert not v3.is_v4 and v3.status == "UNINITIALISED" and v3.imports is None
    bare = Dataset.model_validate({"id": "d0"})
    assert bare.name is None and bare.schema_version is None and not bare.is_v4
    with pytest.raises(ValidationError):
        Dataset.model_validate({"name": "no id"})


def test_schema_field_types_are_open_and_labels_optional() -> None:
    schema = DatasetSchema.model_validate({"strict": False, "fields": {"clip": {"type": "3d_model_url"}}})
    assert schema.fields["clip"].type == "3d_model_url"
    assert schema.to_api() == {"strict": False, "fields": {"clip": {"type": "3d_model_url"}}}
    assert DatasetSchema.model_validate({"strict": True, "fields": None}).is_empty
    assert DatasetSchema(strict=True, fields={"a": SchemaField(type="text", label="A")}).to_api() == {
        "strict": True,
        "fields": {"a": {"type": "text", "label": "A"}},
    }


def test_request_bodies() -> None:
    schema = DatasetSchema(strict=False, fields={})
    assert CreateDatasetRequest(name="n", workspace_id="w", dataset_schema=None).to_api() == {
        "name": "n",
        "workspace_id": "w",
    }
    # A schema without fields is never sent: the workspace then decides the version (V4 unset, or V3).
    assert CreateDatasetRequest(name="n", workspace_id="w", dataset_schema=schema).to_api() == {
        "name": "n",
        "workspace_id": "w",
    }
    typed = DatasetSchema(strict=True, fields={"a": SchemaField(type="text")})
    assert CreateDatasetRequest(name="n", workspace_id="w", dataset_schema=typed).to_api()["schema"] == {
        "strict": True,
        "fields": {"a": {"type": "text"}},
    }
    assert UpdateSchemaRequest(dataset_schema=schema).to_api() == {"schema": {"strict": False, "fields": {}}}


def test_import_job_with_all_fields_and_live_counters() -> None:
    job = ImportJob.model_validate(
        {
            "dataset_id": "d",
            "import_id": "i",
            "type": "file_upload",
            "filename": "a.jsonl",
            "created_at": "2026-09-01T12:00:00Z",
            "updated_at": "not a date",
            "status": "partial",
            "accepted_count": 8,
            "rejected_count": 2,
            "errors": [
                {"record_index": 3, "field": "text", "reason": "too long"},
                {"record_index": None, "field": None, "reason": None},
                {"field": "_raw"},
            ],
            "processing_started_at": "2026-09-01T12:00:01Z",
            "processed_offset": 10,
            "written_count": 8,
            "duplicate_count": 1,
            "duplicate_seen_count": 1,
            "rejected_seen_count": 2,
        }
    )
    assert job.is_terminal
    assert job.updated_at is None and job.created_at is not None
    assert job.errors[0].record_index == 3 and job.errors[2].field == "_raw"
    assert (job.processed_offset, job.written_count, job.duplicate_count) == (10, 8, 1)
    assert (job.duplicate_seen_count, job.rejected_seen_count) == (1, 2)


def test_import_job_minimal_and_null_errors() -> None:
    job = ImportJob.model_validate({"import_id": "i", "status": "uninitialised", "errors": None})
    assert job.errors == [] and not job.is_terminal and job.accepted_count is None


@pytest.mark.parametrize("status", ["complete", "partial", "failed", "pending_schema"])
def test_terminal_import_statuses(status: str) -> None:
    assert ImportJob(import_id="i", status=status).is_terminal


@given(st.text(max_size=20))
def test_unknown_import_status_is_never_terminal(status: str) -> None:
    assert ImportJob(import_id="i", status=status).is_terminal == (status in IMPORT_TERMINAL_STATUSES)


def test_migration_job() -> None:
    running = MigrationJob.model_validate({"job_id": "j", "status": "processing", "schema_version": "2"})
    assert not running.is_terminal and running.schema_version == 2
    partial = MigrationJob.model_validate(
        {"job_id": "j", "status": "partial", "reprocessed_count": 5, "failed_count": 1, "errors": ["field x nulled"]}
    )
    assert partial.is_terminal and partial.errors[0].reason == "field x nulled"
    assert not MigrationJob(job_id="j", status="rolling_back").is_terminal


def test_dataset_status() -> None:
    assert DatasetStatus.model_validate({"status": "READY"}).is_terminal
    assert not DatasetStatus.model_validate({"status": "PROCESSING"}).is_terminal
    assert not DatasetStatus.model_validate({}).is_terminal


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("a.jsonl", "application/x-ndjson"),
        ("a.NDJSON", "application/x-ndjson"),
        ("a.csv", "text/csv"),
        ("a.zip", "application/zip"),
        ("a.txt", None),
        ("noext", None),
    ],
)
def test_content_type_fallback_by_extension(filename: str, content_type: str | None) -> None:
    assert content_type_for(filename) == content_type


def test_upload_target_current_shape() -> None:
    target = UploadTarget.from_api(
        {
            "upload_url": f"https://bucket.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature={SIGNATURE}",
            "http_method": "PUT",
            "import_id": "imp-1",
            "expires_at": "2026-09-01T12:15:00Z",
            "content_type": "text/csv; charset=utf-8",
            "dataset_id": "d",
            "file_key": "k",
            "something_new": 1,
        },
        filename="a.csv",
        dataset_id="d",
    )
    assert target.content_type == "text/csv; charset=utf-8" and not target.content_type_inferred
    assert target.expires_at is not None and target.import_id == "imp-1"
    assert SIGNATURE in target.upload_url  # the caller needs the real URL
    assert_no_leak(repr(target), str(target))
    assert "AKIA" not in repr(target)


def test_upload_target_missing_content_type_and_old_shape() -> None:
    target = UploadTarget.from_api(
        {"url": f"https://s3.example/k?X-Amz-Signature={SIGNATURE}", "key": "datasets/k"},
        filename="a.jsonl",
        dataset_id="d",
    )
    assert target.upload_url.startswith("https://s3.example/k")
    assert target.file_key == "datasets/k" and target.import_id is None
    assert target.content_type == "application/x-ndjson" and target.content_type_inferred
    assert target.dataset_id == "d" and target.filename == "a.jsonl"
    assert_no_leak(repr(target), str(target))
    with pytest.raises(ValidationError):
        UploadTarget.from_api({"import_id": "i"}, filename="a.jsonl", dataset_id="d")


def test_append_result_and_batches() -> None:
    result = AppendResult.model_validate({"accepted_count": 3, "rejected_count": 0, "errors": None, "extra": True})
    assert not result.retried and result.errors == []
    result.attempts = 2
    assert result.retried
    batch = Batch.model_validate({"id": "b", "datasets": [{"id": "d1"}, {"id": "d2", "name": "x"}], "dataset_id": "d3"})
    assert batch.dataset_ids == ["d1", "d2", "d3"]
    assert Batch.model_validate({"id": "b", "dataset_id": "d1", "datasets": None}).dataset_ids == ["d1"]


@pytest.mark.parametrize("method", [None, "", "  ", "put"])
def test_upload_target_null_or_blank_method_means_put(method: object) -> None:
    target = UploadTarget.from_api(
        {"upload_url": "https://s3.example/k", "http_method": method, "import_id": "i"},
        filename="a.jsonl",
        dataset_id="d",
    )
    assert target.http_method == "PUT"


def test_dataset_imports_get_the_dataset_id_and_unnamed_imports_are_left_out() -> None:
    dataset = Dataset.model_validate(
        {
            **V4,
            "imports": [
                {"import_id": "i2", "status": "complete"},
                {"status": "uninitialised"},
                {"import_id": "i1", "dataset_id": "other", "status": "failed"},
            ],
        }
    )
    assert [(j.import_id, j.dataset_id) for j in dataset.imports or []] == [("i2", V4["id"]), ("i1", "other")]


def test_schema_version_decides_the_version_and_nothing_else() -> None:
    """Prolific's `schema_version` is read, never assumed: a V4 without a schema is V4, a V3 with one is V3."""
    assert Dataset.model_validate({**V4, "schema": None, "imports": None}).is_v4
    assert not Dataset.model_validate({**V4, "schema_version": "3"}).is_v4
    assert Dataset.model_validate({"id": "x", "schema": None, "imports": []}).is_v4  # no version: what it carries


def test_v3_baseline_tells_a_lingering_status_from_a_new_outcome() -> None:
    before = V3Baseline.of(
        Dataset.model_validate(
            {"id": "d", "schema_version": 3, "status": "READY", "filename": "a.csv", "total_datapoint_count": 2}
        )
    )
    assert before.may_linger
    same = Dataset.model_validate(
        {"id": "d", "schema_version": 3, "status": "READY", "filename": "a.csv", "total_datapoint_count": 2}
    )
    running = Dataset.model_validate({"id": "d", "schema_version": 3, "status": "PROCESSING", "filename": "b.csv"})
    new = Dataset.model_validate(
        {"id": "d", "schema_version": 3, "status": "ERROR", "filename": "b.csv", "total_datapoint_count": 2}
    )
    assert not before.changed(same) and not before.changed(running) and before.changed(new)
    fresh = V3Baseline.of(Dataset.model_validate({"id": "d", "schema_version": 3, "status": "UNINITIALISED"}))
    assert not fresh.may_linger
