"""Progress messages (docs/architecture.md, Progress): a value 0-100 and a message a person can read, only what is
true.
"""

from __future__ import annotations

from prolific_mcp.api.models import ImportJob, MigrationJob
from prolific_mcp.text import one_line, plural
from prolific_mcp.uploads.jobs import UploadJob


def _mb(n: int) -> str:
    if n < 1_000_000:
        return f"{n / 1000:,.0f} KB"
    return f"{n / 1_000_000:,.1f} MB" if n < 10_000_000 else f"{n / 1_000_000:,.0f} MB"


def progress(job: UploadJob) -> tuple[float, str]:
    """(value 0–100, a message a person can read) for a job's current state (docs/architecture.md, Progress).

    Only what is true: a place in the queue only while the job waits in it, 100 only at a terminal status (an
    upload that ended with an error or a cancel says it stopped, at a value that does not rise)."""
    name = job.plan.filename
    if job.error is not None or job.cancelled:
        return 0.0, f"stopped: the upload of {name} did not finish"
    if job.phase == "waiting_for_slot":
        if not job.queued_for_slot:
            return 0.0, f"starting the upload of {name}"
        ahead = "next in line" if job.slots_ahead == 0 else f"{job.slots_ahead} ahead"
        return 0.0, f"waiting for an upload slot ({ahead}): every slot is busy with another upload"
    if job.phase == "requesting_url":
        return 0.0, f"asking for an upload URL for {name}"
    if job.phase == "uploading":
        size = max(1, job.plan.size)
        return 50.0 * job.bytes_sent / size, f"uploading {name}: {_mb(job.bytes_sent)} of {_mb(job.plan.size)}"
    status = job.terminal_status
    if status is not None:
        return 100.0, f"{status.lower()}: {name}"
    if job.phase == "done":
        return 0.0, f"stopped: {name} is no longer followed"
    if job.plan.v3:
        rows = f"{plural(job.plan.record_count, 'row')}, " if job.plan.record_count else ""
        return 51.0, f"Prolific is processing {name} ({rows}dataset status {job.v3_status or 'not known yet'})"
    return import_progress(name, job.plan.record_count, job.latest)


def import_progress(name: str, record_count: int | None, latest: ImportJob | None) -> tuple[float, str]:
    """(value, message) while Prolific has the file: 50 uploaded, 51 queued, then 52–99 by the records processed
    (against the pre-flight's count when known), 100 at a terminal status."""
    if latest is not None and latest.is_terminal:
        return 100.0, f"{latest.status.lower()}: {name}"
    if latest is None or latest.status == "uninitialised":
        return 50.0, f"uploaded {name}; waiting for Prolific to pick it up"
    if latest.status == "queued":
        return 51.0, f"queued at Prolific: processing of {name} has not started yet"
    if latest.status == "processing":
        done = latest.processed_offset or 0
        if record_count:
            share = min(1.0, done / record_count)
            return 52.0 + 47.0 * share, f"processing {name}: {done:,} of {record_count:,} records"
        return 52.0, f"processing {name}: {done:,} records so far"
    return 51.0, f"import status: {one_line(latest.status, 30)}"


def migration_progress(migration: MigrationJob, datapoints: int | None = None) -> tuple[float, str]:
    """(value, message) of a schema migration: by the datapoints re-checked against the dataset's count when
    known, 100 at a terminal status."""
    done = migration.reprocessed_count or 0
    if migration.is_terminal:
        return 100.0, f"schema migration {one_line(migration.status, 30)}: {done:,} datapoints re-checked"
    if datapoints:
        share = min(1.0, done / datapoints)
        return 1.0 + 98.0 * share, f"schema migration: {done:,} of {datapoints:,} datapoints re-checked"
    return 1.0, f"schema migration {one_line(migration.status, 30)}: {done:,} datapoints re-checked so far"


APPEND_WAITING = "waiting for a running import or schema migration on the dataset to finish"
