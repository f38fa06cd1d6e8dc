"""set_schema: the checks that refuse a change, the change itself, the wait for its migration, and the re-check of
imports parked in pending_schema (docs/prolific-api.md, Where the docs are silent)."""

from __future__ import annotations

from functools import partial
from typing import Final

from prolific_mcp.api.errors import ProlificError
from prolific_mcp.api.models import Dataset, MigrationJob
from prolific_mcp.operations import render
from prolific_mcp.operations.deps import (
    Deps,
    OperationError,
    Progress,
    api_schema,
    checked_id,
    ended,
    local_schema,
    parse_fields,
)
from prolific_mcp.operations.results import MigrationInfo, SchemaChange, SetSchemaResult
from prolific_mcp.records import Schema
from prolific_mcp.records.suggest import SchemaDiff, schema_diff
from prolific_mcp.text import one_line
from prolific_mcp.uploads.polling import PollPlanner

PARKED_GRACE_SECONDS: Final = 3.0
PARKED_FIRST_POLL_SECONDS: Final = 0.5


def check_schema_change(dataset: Dataset, diff: SchemaDiff, *, allow_destructive: bool, dry_run: bool) -> None:
    """Refuse what must not happen: a V3 dataset, a moved task_group_id on data, an unconfirmed destructive change."""
    if not dataset.is_v4:
        raise OperationError(
            f"dataset {dataset.id} is a legacy V3 dataset, which has no schema: create a V4 dataset with "
            "create_dataset(fields=...) and upload to that one"
        )
    count = dataset.total_datapoint_count or 0
    if count > 0 and diff.task_group_moved:
        before, after = diff.task_group_moved
        raise OperationError(
            f"the dataset has {count:,} datapoints, so its task_group_id field cannot move "
            f"({before or 'none'} → {after or 'none'}): "
            + (f"keep {before} as the task_group_id field" if before else "keep the schema without a task_group_id")
            + ", or create a new dataset for the new grouping"
        )
    if count > 0 and diff.destructive and not allow_destructive and not dry_run:
        raise OperationError(
            f"this change would {'; '.join(diff.describe())} on a dataset with {count:,} datapoints: the existing "
            "datapoints would be re-checked against the new schema, and values that no longer fit may be set to "
            "null. Call again with allow_destructive=true to go ahead (dry_run=true shows the diff only)."
        )


async def set_schema(
    deps: Deps,
    dataset_id: str,
    fields: object,
    strict: bool,
    *,
    dry_run: bool = False,
    allow_destructive: bool = False,
    wait_seconds: float | None = None,
    progress: Progress | None = None,
) -> SetSchemaResult:
    dataset_id = checked_id(dataset_id, "dataset_id")
    new = parse_fields(fields, strict)
    if new.is_empty:
        raise OperationError("fields is empty: a schema needs at least one field")
    wait = deps.clamp_wait(wait_seconds)
    dataset = await deps.client.get_dataset(dataset_id)
    diff = schema_diff(local_schema(dataset) if dataset.is_v4 else None, new)
    if dataset.is_v4:
        await deps.remember(dataset, "touched")
    check_schema_change(dataset, diff, allow_destructive=allow_destructive, dry_run=dry_run)
    changes = SchemaChange.model_validate(diff.as_dict())
    summary = "; ".join(diff.describe())
    if dry_run or diff.empty:
        text = (
            f"Dry run on {dataset_id}: would {summary}. Nothing was changed."
            + (
                f" On this dataset's {dataset.total_datapoint_count:,} datapoints the change is destructive: the "
                "real call needs allow_destructive=true."
                if diff.destructive and (dataset.total_datapoint_count or 0) > 0
                else ""
            )
            if dry_run
            else f"The schema of {dataset_id} already matches: nothing to change."
        )
        unapplied = SetSchemaResult(
            mode=deps.mode, dataset_id=dataset_id, applied=False, dry_run=dry_run, changes=changes, finished=True
        )
        if dry_run:
            listed = [{"key": f.key, "type": f.type, "label": f.label or ""} for f in new.fields]
            needs_consent = diff.destructive and (dataset.total_datapoint_count or 0) > 0
            unapplied.next_call = render.apply_schema(dataset_id, listed, new.strict, destructive=needs_consent)
        else:
            unapplied.next_call = render.after_schema(dataset_id, finished=True, released=[], still_parked=[])
        return unapplied.with_text(text)
    result = await _apply(deps, dataset, new, wait, progress)
    result.changes = changes
    result.next_call = render.after_schema(
        dataset_id, finished=result.finished, released=result.released_imports, still_parked=result.still_parked
    )
    return result.with_text(f"Schema of {dataset_id} updated: {summary}.\n{result.text}".rstrip("\n"))


async def _apply(deps: Deps, dataset: Dataset, new: Schema, wait: float, progress: Progress | None) -> SetSchemaResult:
    """PATCH the schema, wait for its migration, re-check parked imports; the text says what happened after."""
    dataset_id = dataset.id
    parked = [j.import_id for j in dataset.imports or [] if j.status == "pending_schema"]
    update = await deps.client.update_schema(dataset_id, api_schema(new))
    lines: list[str] = []
    info: MigrationInfo | None = None
    finished = True
    if update.migration_job_id:
        deps.migrations[dataset_id] = update.migration_job_id  # get_dataset shows its status from now on
        migration = await wait_migration(
            deps, dataset_id, update.migration_job_id, wait, progress, datapoints=dataset.total_datapoint_count
        )
        info = MigrationInfo(
            job_id=migration.job_id,
            status=migration.status,
            reprocessed_count=migration.reprocessed_count,
            failed_count=migration.failed_count,
            reason=one_line(migration.reason, 300) if migration.reason else None,
        )
        finished = migration.is_terminal
        lines.append(render.migration(dataset_id, migration))
    released, still = await recheck_parked(deps, dataset_id, parked) if parked else ([], [])
    lines += render.parked_imports(dataset_id, released, still)
    return SetSchemaResult(
        mode=deps.mode,
        dataset_id=dataset_id,
        applied=True,
        dry_run=False,
        changes=SchemaChange(),
        migration=info,
        finished=finished,
        released_imports=released,
        still_parked=still,
    ).with_text("\n".join(lines))


async def wait_migration(
    deps: Deps,
    dataset_id: str,
    job_id: str,
    wait: float,
    progress: Progress | None,
    *,
    datapoints: int | None = None,
) -> MigrationJob:
    """Follow a schema migration until it ends or the wait is over (progress by the datapoints re-checked of the
    dataset's `datapoints`); its last known state."""
    planner = PollPlanner()

    async def report(migration: MigrationJob) -> None:
        if progress is not None:
            await progress(*render.migration_progress(migration, datapoints))

    fetch = partial(deps.client.get_migration, dataset_id, job_id)
    pace = lambda m: (m.status, m.reprocessed_count, None)  # noqa: E731
    return await deps.poll(fetch, ended, wait=wait, planner=planner, on_each=report, observe=pace)


async def recheck_parked(deps: Deps, dataset_id: str, parked: list[str]) -> tuple[list[str], list[str]]:
    """After a schema change, which pending_schema imports move on within a short grace: (released, still)."""
    remaining = set(parked)
    released: list[str] = []

    async def check() -> set[str]:
        for import_id in sorted(remaining):
            try:
                job = await deps.client.get_import(dataset_id, import_id)
            except ProlificError:
                continue
            if job.status != "pending_schema":
                released.append(import_id)
                remaining.discard(import_id)
        return remaining

    async def nothing_to_report(_: set[str]) -> None:
        return None

    planner = PollPlanner(first_delay=PARKED_FIRST_POLL_SECONDS)
    await deps.poll(check, lambda left: not left, wait=PARKED_GRACE_SECONDS, planner=planner, on_each=nothing_to_report)
    return released, sorted(remaining)
