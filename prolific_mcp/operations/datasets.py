"""Workspaces and datasets: list_workspaces, list_datasets, get_dataset, create_dataset."""

from __future__ import annotations

import logging

import anyio

from prolific_mcp.api.errors import ProlificError
from prolific_mcp.api.models import Dataset
from prolific_mcp.operations import render
from prolific_mcp.operations.deps import Deps, OperationError, api_schema, checked_id, parse_fields
from prolific_mcp.operations.results import (
    DatasetResult,
    DatasetsResult,
    DatasetSummary,
    FieldInfo,
    ImportInfo,
    MigrationInfo,
    WorkspaceInfo,
    WorkspacesResult,
)
from prolific_mcp.text import one_line

log = logging.getLogger("prolific_mcp.operations")


async def list_workspaces(deps: Deps) -> WorkspacesResult:
    workspaces = await deps.client.list_workspaces()
    infos = [WorkspaceInfo(id=w.id, title=one_line(w.title or "", 120) or None) for w in workspaces]
    default = deps.options.default_workspace_id or (infos[0].id if len(infos) == 1 else None)
    result = WorkspacesResult(mode=deps.mode, workspaces=infos, default_workspace_id=default)
    return result.with_text(render.workspaces(infos, default))


async def _found_through_batches(
    deps: Deps, workspaces: list[str]
) -> tuple[dict[str, int | None], list[tuple[str, str | None, str]]]:
    """Datasets attached to the workspaces' batches: ({id: datapoint count}, [(id, name, workspace)])."""
    counts: dict[str, int | None] = {}
    found: list[tuple[str, str | None, str]] = []
    for wid in workspaces:
        try:
            batches = await deps.client.list_batches(wid)
        except ProlificError as exc:
            log.info("could not list batches of workspace %s: %s", wid, exc)
            continue
        for batch in batches:
            for ds in batch.datasets:
                counts[ds.id] = ds.total_datapoint_count
                found.append((ds.id, ds.name, wid))
            for dsid in batch.dataset_ids:
                if dsid not in counts:
                    counts[dsid] = None
                    found.append((dsid, None, wid))
    return counts, found


async def list_datasets(deps: Deps, workspace_id: str | None = None) -> DatasetsResult:
    """Datasets this server knows (created or used here) plus those found through the workspace's batches."""
    if workspace_id is not None:
        workspace_id = checked_id(workspace_id, "workspace_id")
    account = await deps.account_id()
    origin = deps.options.origin
    workspaces = [workspace_id] if workspace_id else [w.id for w in await deps.client.list_workspaces()]
    counts, found = await _found_through_batches(deps, workspaces)

    def remember_found() -> None:
        for dsid, name, wid in found:
            deps.ledger.remember_dataset(origin, account, dsid, source="batch", name=name, workspace_id=wid)

    await anyio.to_thread.run_sync(remember_found)
    known = await anyio.to_thread.run_sync(lambda: deps.ledger.known_datasets(origin, account, workspace_id))
    items = [
        DatasetSummary(
            id=d.dataset_id,
            name=one_line(d.name or "", 120) or None,
            workspace_id=d.workspace_id,
            source=d.source,
            total_datapoint_count=counts.get(d.dataset_id),
        )
        for d in known
    ]
    text = render.datasets([(d.id, d.name, d.source) for d in items])
    return DatasetsResult(mode=deps.mode, datasets=items).with_text(text)


def dataset_result(deps: Deps, dataset: Dataset, batches: list[str] | None = None) -> DatasetResult:
    """The structured view of a dataset, with its readable text."""
    schema = dataset.dataset_schema
    fields = [FieldInfo(key=k, type=f.type, label=f.label or "") for k, f in (schema.fields if schema else {}).items()]
    imports = [
        ImportInfo(
            import_id=j.import_id,
            status=j.status,
            filename=one_line(j.filename or "", 120) or None,
            created_at=j.created_at.isoformat() if j.created_at else None,
            accepted_count=j.accepted_count,
            rejected_count=j.rejected_count,
            duplicate_count=j.duplicate_count,
        )
        for j in (dataset.imports or [])[:10]
    ]
    result = DatasetResult(
        mode=deps.mode,
        id=dataset.id,
        name=one_line(dataset.name or "", 200) or None,
        version=4 if dataset.is_v4 else 3,
        workspace_id=dataset.workspace_id,
        total_datapoint_count=dataset.total_datapoint_count,
        status=dataset.status,
        strict=schema.strict if schema is not None else None,
        fields=fields,
        imports=imports,
        batches=batches or [],
    )
    return result.with_text(render.dataset_view(result))


async def get_dataset(deps: Deps, dataset_id: str) -> DatasetResult:
    dataset = await deps.client.get_dataset(checked_id(dataset_id, "dataset_id"))
    await deps.remember(dataset, "touched")
    result = dataset_result(deps, dataset)
    result.next_call = render.after_view(result)
    job_id = deps.migrations.get(dataset.id)
    if job_id is not None:
        try:
            migration = await deps.client.get_migration(dataset.id, job_id)
        except ProlificError as exc:
            return result.with_text(f"{result.text}\nSchema migration {job_id}: {render.error_text(exc)}")
        result.migration = MigrationInfo(
            job_id=migration.job_id,
            status=migration.status,
            reprocessed_count=migration.reprocessed_count,
            failed_count=migration.failed_count,
            reason=one_line(migration.reason, 300) if migration.reason else None,
        )
        line = render.migration_status(dataset.id, migration, dataset.total_datapoint_count)
        return result.with_text(f"{result.text}\n{line}")
    return result


async def create_dataset(
    deps: Deps,
    name: str,
    workspace_id: str | None = None,
    fields: object = None,
    strict: bool = False,
    legacy_v3: bool = False,
) -> DatasetResult:
    if not isinstance(name, str) or not name.strip():
        raise OperationError("name is empty: give the dataset a name people will recognise")
    name = name.strip()
    if legacy_v3 and fields:
        raise OperationError("legacy_v3 datasets have no schema: drop fields, or create a V4 dataset (legacy_v3=false)")
    schema = None if legacy_v3 else parse_fields(fields, strict)
    wid = await _workspace(deps, workspace_id)
    dataset = await deps.client.create_dataset(name, wid, api_schema(schema) if schema is not None else None)
    await deps.remember(dataset, "created")
    result = dataset_result(deps, dataset)
    result.created = True
    schemaless = schema is not None and schema.is_empty
    return result.with_text(render.created(result, v3=legacy_v3, schemaless=schemaless))


async def _workspace(deps: Deps, workspace_id: str | None) -> str:
    if workspace_id:
        return checked_id(workspace_id, "workspace_id")
    if deps.options.default_workspace_id:
        return deps.options.default_workspace_id
    workspaces = await deps.client.list_workspaces()
    if len(workspaces) == 1:
        return workspaces[0].id
    raise OperationError(render.which_workspace([(w.id, w.title) for w in workspaces]))
