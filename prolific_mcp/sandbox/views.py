"""JSON shapes of the sandbox's resources, as Prolific's documentation describes them (docs/prolific-api.md)."""

from __future__ import annotations

from typing import Any, Final

from prolific_mcp.sandbox.clock import iso
from prolific_mcp.sandbox.rows import DatasetRow, JobError, MigrationRow, StoredUpload

TERMINAL_WITH_COUNTS: Final = ("complete", "partial", "failed")


def user_view(user: dict[str, Any], workspace_id: str) -> dict[str, Any]:
    return {
        "id": user["id"],
        "first_name": user["first_name"],
        "last_name": user["last_name"],
        "name": f"{user['first_name']} {user['last_name']}",
        "email": user["email"],
        "user_type": "researcher",
        "current_workspace_id": workspace_id,
        "date_joined": iso(user["created_at"]),
    }


def workspace_view(ws: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ws["id"],
        "title": ws["title"],
        "description": ws["description"],
        "owner": ws["owner"],
        "users": [
            {
                "id": user["id"],
                "name": f"{user['first_name']} {user['last_name']}",
                "email": user["email"],
                "roles": ["WORKSPACE_ADMIN"],
            }
        ],
        "projects": [],
        "wallet": None,
        "naivety_distribution_rate": None,
        "created_at": iso(ws["created_at"]),
    }


def import_view(up: StoredUpload, dataset_id: str, errors: list[JobError]) -> dict[str, Any]:
    """A DatasetImportJob (docs/prolific-api.md) with the live progress counters."""
    out: dict[str, Any] = {
        "dataset_id": dataset_id,
        "import_id": up.id,
        "type": "file_upload",
        "filename": up.filename,
        "file_key": up.file_key,
        "created_at": iso(up.created_at),
        "updated_at": iso(up.updated_at),
        "status": up.status,
        "processing_started_at": iso(up.processing_started_at),
        "processed_offset": up.processed_offset,
        "written_count": up.written_count,
        "duplicate_seen_count": up.duplicate_seen,
        "rejected_seen_count": up.rejected_seen,
    }
    if up.status in TERMINAL_WITH_COUNTS:
        out["accepted_count"] = up.accepted_seen
        out["rejected_count"] = up.rejected_seen
        out["duplicate_count"] = up.duplicate_seen
        out["errors"] = [e.to_dict() for e in errors]
    if up.reason is not None:
        out["reason"] = up.reason
    return out


def dataset_view(
    ds: DatasetRow, imports: list[StoredUpload] | None = None, errors: dict[str, list[JobError]] | None = None
) -> dict[str, Any]:
    """An AITaskBuilderDataset (docs/prolific-api.md): V4 with `schema` and `imports`, V3 with `status`, `filename`."""
    out: dict[str, Any] = {
        "id": ds.id,
        "name": ds.name,
        "created_at": iso(ds.created_at),
        "created_by": ds.created_by,
        "workspace_id": ds.workspace_id,
        "total_datapoint_count": ds.total,
        "schema_version": ds.version,
    }
    if ds.version == 3:
        out.update(
            status=ds.v3_status,
            filename=ds.v3_filename,
            has_predetermined_grouping_id=ds.v3_grouping,
            schema=None,
            imports=None,
        )
        return out
    errors = errors or {}
    out["schema"] = ds.schema
    out["imports"] = [import_view(up, ds.id, errors.get(up.id, [])) for up in imports or []]
    return out


def migration_view(job: MigrationRow, dataset_id: str, errors: list[JobError]) -> dict[str, Any]:
    """A schema migration job (docs/prolific-api.md)."""
    out: dict[str, Any] = {
        "dataset_id": dataset_id,
        "job_id": job.id,
        "schema_version": job.schema_revision,
        "status": job.status,
        "reprocessed_count": job.reprocessed_count,
        "failed_count": job.failed_count,
        "errors": [e.to_dict() for e in errors],
        "reason": job.reason,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
    }
    return out


def batch_view(batch: dict[str, Any], datasets: dict[str, DatasetRow]) -> dict[str, Any]:
    dataset_id = batch["dataset_id"]
    found = datasets.get(dataset_id) if dataset_id else None
    listed = [{"id": found.id, "name": found.name, "total_datapoint_count": found.total}] if found is not None else []
    return {
        "id": batch["id"],
        "name": batch["name"],
        "workspace_id": batch["workspace_id"],
        "dataset_id": dataset_id,
        "status": batch["status"],
        "created_at": iso(batch["created_at"]),
        "datasets": listed,
    }
