"""Schema changes: a migration's state and the imports parked in pending_schema that a schema released."""

from __future__ import annotations

from collections.abc import Sequence

from prolific_mcp.api.models import MigrationJob
from prolific_mcp.text import one_line, plural


def migration(dataset_id: str, job: MigrationJob) -> str:
    """One or two sentences on a schema migration's state."""
    if job.status == "complete":
        return f"Migration {job.job_id} complete: {job.reprocessed_count or 0:,} datapoints re-checked."
    if job.status == "partial":
        return (
            f"Migration {job.job_id} partial: {job.reprocessed_count or 0:,} re-checked, "
            f"{job.failed_count or 0:,} values could not be converted and were set to null. Check those fields "
            "before setting up a batch."
        )
    if job.status == "failed":
        return (
            f"Migration {job.job_id} failed: {one_line(job.reason or 'no reason given', 300)}. The schema "
            "version changed but the datapoints were not re-checked; try set_schema again or contact Prolific."
        )
    return (
        f"Migration {job.job_id} is still {one_line(job.status, 30)} ({job.reprocessed_count or 0:,} datapoints "
        f're-checked so far). Next: get_dataset(dataset_id="{dataset_id}") in a minute shows its status and the '
        "schema in force."
    )


def migration_status(dataset_id: str, job: MigrationJob, datapoints: int | None) -> str:
    """get_dataset's line on the latest schema migration this server started on the dataset."""
    if job.is_terminal:
        return f"Latest schema migration: {migration(dataset_id, job)}"
    of = f" of {datapoints:,}" if datapoints else ""
    return (
        f"Schema migration {job.job_id} is still {one_line(job.status, 30)}: {job.reprocessed_count or 0:,}{of} "
        f'datapoints re-checked so far. Call get_dataset(dataset_id="{dataset_id}") again to follow it; appends '
        "and imports wait until it ends."
    )


def parked_imports(dataset_id: str, released: Sequence[str], still: Sequence[str]) -> list[str]:
    lines = []
    if released:
        lines.append(
            f"{plural(len(released), 'parked import')} moved on: follow with "
            + ", ".join(f'get_import_status(dataset_id="{dataset_id}", import_id="{i}")' for i in released[:3])
        )
    if still:
        lines.append(
            f"{plural(len(still), 'parked import')} did not move on ({', '.join(still[:5])}): upload those "
            "files again with upload_file."
        )
    return lines
