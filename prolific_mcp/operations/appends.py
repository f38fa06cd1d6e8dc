"""append_records: up to 1,000 records (≤ 1 MiB of JSONL) appended synchronously, waiting out a running import."""

from __future__ import annotations

import contextlib
import json

from prolific_mcp.api.errors import ConflictError, ProlificError
from prolific_mcp.api.models import AppendResult
from prolific_mcp.operations import render
from prolific_mcp.operations.deps import (
    MAX_APPEND_BYTES,
    Deps,
    OperationError,
    Progress,
    checked_id,
)
from prolific_mcp.operations.results import AppendRecordsResult
from prolific_mcp.records import MAX_APPEND_RECORDS
from prolific_mcp.uploads.groups import group_errors
from prolific_mcp.uploads.polling import PollPlanner
from prolific_mcp.uploads.rejections import error_items


def append_body(records: object) -> bytes:
    """The records checked (a list of 1 to 1,000 objects, or that as a JSON string) and written as JSONL (stdlib
    json: integers of any size stay exact)."""
    if isinstance(records, str):
        try:
            records = json.loads(records)
        except ValueError:
            raise OperationError("records is not valid JSON: pass a list of objects") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise OperationError('records must be a list of objects, e.g. [{"review": "Great"}]')
    if not records:
        raise OperationError("records is empty: pass at least one record")
    if len(records) > MAX_APPEND_RECORDS:
        raise OperationError(
            f"{len(records):,} records is over the {MAX_APPEND_RECORDS:,} an append takes: write them to a .jsonl "
            "file and use upload_file"
        )
    body = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
    if len(body) > MAX_APPEND_BYTES:
        raise OperationError(
            f"the records are {len(body):,} bytes, over 1 MiB: write them to a .jsonl file and use upload_file"
        )
    return body


async def _running_import(deps: Deps, dataset_id: str) -> str | None:
    """The import holding the dataset, if one is queued or processing (None when it cannot be told)."""
    with contextlib.suppress(ProlificError):
        dataset = await deps.client.get_dataset(dataset_id)
        return next((j.import_id for j in dataset.imports or [] if j.status in render.RUNNING_IMPORT), None)
    return None


async def append_records(
    deps: Deps,
    dataset_id: str,
    records: object,
    *,
    wait_seconds: float | None = None,
    progress: Progress | None = None,
) -> AppendRecordsResult:
    dataset_id = checked_id(dataset_id, "dataset_id")
    body = append_body(records)
    dataset = await deps.client.get_dataset(dataset_id)
    if not dataset.is_v4:
        raise OperationError(
            f"dataset {dataset_id} is a legacy V3 dataset, which takes no appends: upload the whole CSV again with "
            f'upload_file(dataset_id="{dataset_id}", path=...) (a V3 upload replaces its data)'
        )
    if dataset.dataset_schema is None or dataset.dataset_schema.is_empty:
        raise OperationError(
            f"dataset {dataset_id} has no schema yet, and appends need one to check the records against: set it "
            f'first with set_schema(dataset_id="{dataset_id}", fields=[...], strict=false) (suggest_schema proposes '
            "fields from a file), then append again. Nothing was sent."
        )
    planner = PollPlanner()

    async def attempt() -> AppendResult | None:
        """The append's answer, or None while an import or a migration holds the dataset (409)."""
        try:
            return await deps.client.append_datapoints(dataset_id, body)
        except ConflictError:
            planner.observe(deps.clock(), "queued", None)
            return None

    async def waiting(answer: AppendResult | None) -> None:
        if answer is None and progress is not None:
            await progress(min(99.0, 10.0 * planner.requests), render.APPEND_WAITING)

    wait = deps.clamp_wait(wait_seconds)
    answer = await deps.poll(attempt, lambda a: a is not None, wait=wait, planner=planner, on_each=waiting)
    if answer is None:
        running = await _running_import(deps, dataset_id)
        raise OperationError(render.append_still_blocked(dataset_id, running, deps.clamp_wait(None)))
    groups = group_errors(error_items(answer), answer.rejected_count or 0)
    accepted, rejected = answer.accepted_count or 0, answer.rejected_count or 0
    duplicates = answer.duplicate_count or 0
    return AppendRecordsResult(
        mode=deps.mode,
        dataset_id=dataset_id,
        accepted_count=accepted,
        rejected_count=rejected,
        duplicate_count=duplicates,
        groups=render.group_infos(groups),
        retried=answer.retried,
    ).with_text(render.appended(dataset_id, accepted, rejected, duplicates, groups, retried=answer.retried))
