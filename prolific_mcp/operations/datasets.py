"""Workspaces and datasets: list_workspaces, list_datasets, get_dataset, create_dataset."""

from __future__ import annotations

import logging

import anyio

from prolific_mcp.api.errors import BadRequestError, ProlificError
from prolific_mcp.api.models import Dataset, Workspace
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
    default = await _default_workspace(deps, workspaces)
    result = WorkspacesResult(mode=deps.mode, workspaces=infos, default_workspace_id=default)
    return result.with_text(render.workspaces(infos, default))


async def _default_workspace(deps: Deps, workspaces: list[Workspace]) -> str | None:
    """PROLIFIC_WORKSPACE_ID, else the only workspace; in sandbox mode the sandbox's default (its user's current
    workspace), so its second workspace (without typed datasets) is used only when named."""
    if deps.options.default_workspace_id:
        return deps.options.default_workspace_id
    if len(workspaces) == 1:
        return workspaces[0].id
    if deps.mode == "sandbox" and workspaces:
        current = (await deps.client.get_me()).current_workspace_id
        if current in {w.id for w in workspaces}:
            return current
    return None


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
    known = await deps.known_datasets(workspace_id)
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
    deps: Deps, name: str, workspace_id: str | None = None, fields: object = None, strict: bool = False
) -> DatasetResult:
    """Create a dataset. Its version is the workspace's choice, never ours: with fields a schema is sent (a typed
    workspace makes it V4; one without typed datasets refuses it), without fields no `schema` key at all (V4 with
    no schema yet, or V3). The result reads `schema_version` from Prolific's answer (docs/prolific-api.md, Schemas
    and migrations)."""
    if not isinstance(name, str) or not name.strip():
        raise OperationError("name is empty: give the dataset a name people will recognise")
    name = name.strip()
    schema = parse_fields(fields, strict)
    body_schema = None if schema.is_empty else api_schema(schema)
    wid = await _workspace(deps, workspace_id)
    try:
        dataset = await deps.client.create_dataset(name, wid, body_schema)
    except BadRequestError as exc:
        if body_schema is None or not _refuses_typed(exc):
            raise
        raise OperationError(render.schema_refused_by_workspace(wid, name, exc)) from None
    await deps.remember(dataset, "created")
    result = dataset_result(deps, dataset)
    result.created = True
    v3 = not dataset.is_v4
    schemaless = not v3 and not result.fields
    return result.with_text(render.created(result, v3=v3, schemaless=schemaless))


def _refuses_typed(exc: BadRequestError) -> bool:
    """True when Prolific's 400 to a create with a schema is about the schema itself (a `schema` detail, or the
    typed-datasets feature named): our own checks already passed, so the workspace is refusing schemas."""
    said = " ".join((str(exc), *exc.details)).lower()
    if any(line.lower().startswith("schema:") for line in exc.details):
        return True
    return "typed" in said or ("feature" in said and "schema" in said)


async def _workspace(deps: Deps, workspace_id: str | None) -> str:
    if workspace_id:
        return checked_id(workspace_id, "workspace_id")
    if deps.options.default_workspace_id:
        return deps.options.default_workspace_id
    workspaces = await deps.client.list_workspaces()
    default = await _default_workspace(deps, workspaces)
    if default is not None:
        return default
    raise OperationError(render.which_workspace([(w.id, w.title) for w in workspaces]))
