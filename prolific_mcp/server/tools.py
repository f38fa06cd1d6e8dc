"""The tools (docs/architecture.md, Tools): names, parameters and hints; each docstring is what an agent reads.

Each tool is one call into an operation (`prolific_mcp.operations`) over the server's `Deps`; its text block is
the human summary and its structured content the result model. Failures become ToolErrors whose text says what to
do (and never carries a secret).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ResourceLink, TextContent, ToolAnnotations

from prolific_mcp.api.errors import ProlificError
from prolific_mcp.ids import InvalidIdError
from prolific_mcp.operations import appends, checks, datasets, render, schemas, uploads
from prolific_mcp.operations.deps import Deps, OperationError
from prolific_mcp.operations.results import (
    AppendRecordsResult,
    DatasetResult,
    DatasetsResult,
    ImportResult,
    Result,
    SetSchemaResult,
    SuggestSchemaResult,
    ValidateResult,
    WorkspacesResult,
    structured,
)
from prolific_mcp.server.lifespan import SANDBOX_LINE, AppState
from prolific_mcp.text import for_agent

log = logging.getLogger("prolific_mcp.server")
R = TypeVar("R", bound=Result)
F = TypeVar("F", bound=Callable[..., Any])

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
LOCAL_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

Fields = dict[str, dict[str, str]]
Records = list[dict[str, Any]]


def _links(result: Result) -> list[ResourceLink]:
    dataset_id = getattr(result, "dataset_id", None) or (result.id if isinstance(result, DatasetResult) else None)
    links: list[ResourceLink] = []
    if dataset_id:
        links.append(
            ResourceLink(
                type="resource_link",
                uri=f"prolific://datasets/{dataset_id}",
                name=f"dataset {dataset_id}",
                mime_type="text/markdown",
            )
        )
        import_id = getattr(result, "import_id", None)
        if import_id:
            links.append(
                ResourceLink(
                    type="resource_link",
                    uri=f"prolific://datasets/{dataset_id}/imports/{import_id}",
                    name=f"import {import_id}",
                    mime_type="application/json",
                )
            )
    return links


def safe_text(text: str) -> str:
    """What any text must pass before it reaches a client: nothing invisible, no secret."""
    return for_agent(text)


def safe_data(value: Any) -> Any:
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_text(k) if isinstance(k, str) else k: safe_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_data(v) for v in value]
    return value


def to_call_result(result: Result, notice: str | None = None) -> CallToolResult:
    """The human text (after the SANDBOX line in sandbox mode, and any notice), resource links, and the structured
    content; every string cleaned of invisible characters and secrets."""
    text = result.text if notice is None else f"{notice}\n{result.text}"
    if result.mode == "sandbox":
        text = f"{SANDBOX_LINE}\n{text}"
    content: list[Any] = [TextContent(type="text", text=safe_text(text)), *_links(result)]
    return CallToolResult(content=content, structured_content=safe_data(structured(result)))


def changed_uris(result: Result) -> list[str]:
    """The resources a successful result has changed (for resource-updated notifications)."""
    if isinstance(result, DatasetResult) and result.created:
        return ["prolific://datasets", f"prolific://datasets/{result.id}"]
    if isinstance(result, ImportResult) and result.finished and not result.from_ledger:
        uris = [f"prolific://datasets/{result.dataset_id}"]
        if result.import_id:
            uris.append(f"prolific://datasets/{result.dataset_id}/imports/{result.import_id}")
        return uris
    if isinstance(result, SetSchemaResult) and result.applied:
        return [f"prolific://datasets/{result.dataset_id}", f"prolific://datasets/{result.dataset_id}/schema"]
    if isinstance(result, AppendRecordsResult) and result.accepted_count:
        return [f"prolific://datasets/{result.dataset_id}"]
    return []


async def run_tool(
    holder: AppState, call: Callable[[Deps], Awaitable[R]], ctx: Context | None = None
) -> CallToolResult:
    """Run one operation; every expected failure becomes a ToolError an agent can act on.

    After a change, subscribers of the changed resources are told (2026-07-28 `subscriptions/listen`).
    """
    prefix = f"{SANDBOX_LINE} " if holder.mode == "sandbox" else ""
    try:
        service = await holder.get()
        result = await call(service)
    except (OperationError, ProlificError, InvalidIdError) as exc:
        notice = holder.take_notices()
        raise ToolError(prefix + (f"{notice} " if notice else "") + safe_text(render.error_text(exc))) from None
    except Exception as exc:  # never a bare "Error executing tool": name the operation and the next step
        tool = _tool_name(call)
        log.exception("%s failed unexpectedly", tool)
        raise ToolError(prefix + safe_text(render.unexpected_failure(tool, exc))) from None
    if ctx is not None:
        for uri in changed_uris(result):
            await ctx.notify_resource_updated(uri)
    return to_call_result(result, holder.take_notices())


def _tool_name(call: Callable[..., Any]) -> str:
    """The tool a `run_tool` call serves, from the operation's or the tool's own name (for unexpected errors)."""
    parts = [p for p in getattr(call, "__qualname__", "").split(".") if p not in ("<locals>", "<lambda>")]
    return parts[-1] if parts else "the tool"


def _progress(ctx: Context) -> Callable[[float, str], Awaitable[None]]:
    async def report(value: float, message: str) -> None:
        await ctx.report_progress(value, 100, safe_text(message))

    return report


def register_tools(mcp: MCPServer, holder: AppState, *, read_only: bool, default_wait: float) -> None:
    """Add the tools; write tools only when not read-only."""

    def tool(title: str, annotations: ToolAnnotations) -> Callable[[F], F]:
        def add(fn: F) -> F:
            mcp.add_tool(fn, title=title, description=inspect.cleandoc(fn.__doc__ or ""), annotations=annotations)
            return fn

        return add

    @tool("List workspaces", READ)
    async def list_workspaces() -> Annotated[CallToolResult, WorkspacesResult]:
        """List the Prolific workspaces this account belongs to, with their ids.

        Use it to find the workspace_id for create_dataset (needed only when there is more than one workspace and
        PROLIFIC_WORKSPACE_ID is not set). Returns each workspace's id and title, and the default one.
        """
        return await run_tool(holder, datasets.list_workspaces)

    @tool("List datasets", READ)
    async def list_datasets(workspace_id: str = "") -> Annotated[CallToolResult, DatasetsResult]:
        """List the datasets this server knows: those created or used through it, and those attached to batches.

        Prolific has no endpoint that lists datasets, so a dataset created elsewhere and not used by any batch only
        appears after get_dataset is called with its id. workspace_id narrows the list to one workspace. Next:
        get_dataset(dataset_id) for a dataset's schema and imports.
        """
        return await run_tool(holder, lambda d: datasets.list_datasets(d, workspace_id or None))

    @tool("Get dataset", READ)
    async def get_dataset(dataset_id: str) -> Annotated[CallToolResult, DatasetResult]:
        """Show one dataset: name, version (4 with a schema and import jobs, or legacy 3), datapoint count, the
        schema as a table, and its latest imports with their status and counts.

        Next: upload_file to add data, set_schema to change fields, get_import_status to follow an import.
        """
        return await run_tool(holder, lambda d: datasets.get_dataset(d, dataset_id))

    @tool("Get import status", READ)
    async def get_import_status(
        dataset_id: str, import_id: str, ctx: Context, wait_seconds: float = default_wait
    ) -> Annotated[CallToolResult, ImportResult]:
        """Follow an import until it finishes or wait_seconds pass (0 answers at once), with progress.

        Returns the status; when finished (complete, partial, failed, pending_schema) the counts and the rejected
        records grouped by cause with record numbers and fixes (with excerpts when this machine uploaded the
        file). Read-only: it never writes files. Next: if it is still running after the wait, call it again.
        """
        return await run_tool(
            holder,
            lambda d: uploads.get_import_status(
                d, dataset_id, import_id, wait_seconds=wait_seconds, progress=_progress(ctx)
            ),
            ctx,
        )

    @tool("Suggest a schema", LOCAL_READ)
    async def suggest_schema(path: str) -> Annotated[CallToolResult, SuggestSchemaResult]:
        """Suggest dataset fields and types from a sample of a local .jsonl/.ndjson/.csv file.

        URL columns become image_url, audio_url or video_url by extension; id-like and META_ columns metadata;
        task_group_id only when a column is plainly named so; other text columns text. The fields are ready to pass
        to create_dataset(fields=...) or set_schema. Start here when making a dataset from a file; next:
        create_dataset(name, fields).
        """
        return await run_tool(holder, lambda d: checks.suggest_schema(d, path))

    @tool("Validate a file", READ)
    async def validate_file(
        path: str,
        dataset_id: str = "",
        fields: Fields = {},  # noqa: B006 (never mutated)
        strict: bool = False,
    ) -> Annotated[CallToolResult, ValidateResult]:
        """Check a local data file against a dataset's schema (dataset_id) or given fields and strict, without
        importing anything.

        Returns the record count, whether the file can be imported at all, and the records that would be rejected,
        grouped by cause with record and line numbers. Next: fix the file, or upload_file.
        """
        return await run_tool(
            holder, lambda d: checks.validate_file(d, path, dataset_id or None, fields or None, strict)
        )

    if read_only:
        return

    @tool(
        "Create dataset",
        ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True),
    )
    async def create_dataset(
        name: str,
        ctx: Context,
        workspace_id: str = "",
        fields: Fields = {},  # noqa: B006 (never mutated)
        strict: bool = False,
        legacy_v3: bool = False,
    ) -> Annotated[CallToolResult, DatasetResult]:
        """Create an AI Task Builder dataset (V4, with a schema) and return its id.

        fields maps each key to {"type": ..., "label": ...}; types: text, image_url, audio_url, video_url, metadata,
        task_group_id (at most one). Get them from suggest_schema. strict=true rejects records missing any field.
        Without fields the dataset has no schema yet and uploads wait in pending_schema until set_schema.
        workspace_id defaults to PROLIFIC_WORKSPACE_ID or the only workspace. legacy_v3=true makes a V3 (CSV-only,
        no schema) dataset. Each call creates a new dataset. Next: upload_file(dataset_id, path).
        """
        return await run_tool(
            holder, lambda d: datasets.create_dataset(d, name, workspace_id or None, fields, strict, legacy_v3), ctx
        )

    @tool(
        "Set schema",
        ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True),
    )
    async def set_schema(
        dataset_id: str,
        fields: Fields,
        strict: bool,
        ctx: Context,
        dry_run: bool = False,
        allow_destructive: bool = False,
        wait_seconds: float = default_wait,
    ) -> Annotated[CallToolResult, SetSchemaResult]:
        """Replace a V4 dataset's whole schema (fields and strict), after checking it locally.

        Shows the diff against the current schema; dry_run=true stops there. On a dataset with data, removing a
        field or changing a type re-checks existing values (they may become null) and is refused unless
        allow_destructive=true; the task_group_id field cannot move. Waits for the schema migration (with
        progress) up to wait_seconds, then re-checks imports parked in pending_schema. Next: upload_file, or
        get_dataset to see the schema in force.
        """
        return await run_tool(
            holder,
            lambda d: schemas.set_schema(
                d,
                dataset_id,
                fields,
                strict,
                dry_run=dry_run,
                allow_destructive=allow_destructive,
                wait_seconds=wait_seconds,
                progress=_progress(ctx),
            ),
            ctx,
        )

    @tool(
        "Upload file",
        ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True),
    )
    async def upload_file(
        dataset_id: str,
        ctx: Context,
        path: str = "",
        content: str = "",
        filename: str = "",
        format: str = "",
        wait_seconds: float = default_wait,
        force: bool = False,
    ) -> Annotated[CallToolResult, ImportResult]:
        """Upload a .jsonl/.ndjson/.csv file into a dataset and wait for the import, with progress.

        path is a file inside the allowed directories (relative paths start at the first); or pass content with
        filename for small data (≤ 1 MiB). The file is checked locally first; what is certain to fail is refused
        before anything is sent. Returns the outcome: accepted, rejected (grouped by cause with record numbers, a
        fix each, and a <name>.rejected.<ext> file beside yours), duplicates. If the import is still running after
        wait_seconds, the upload continues in the background and the result gives the exact next call. Calling it
        again with the same file resumes or returns the stored outcome instead of uploading twice (force=true
        uploads again).
        """
        return await run_tool(
            holder,
            lambda d: uploads.upload_file(
                d,
                dataset_id,
                path or None,
                content or None,
                filename or None,
                format or None,
                wait_seconds=wait_seconds,
                force=force,
                progress=_progress(ctx),
            ),
            ctx,
        )

    @tool(
        "Append records",
        ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True),
    )
    async def append_records(
        dataset_id: str, records: Records, ctx: Context, wait_seconds: float = default_wait
    ) -> Annotated[CallToolResult, AppendRecordsResult]:
        """Append up to 1,000 records (≤ 1 MiB) to a V4 dataset that has a schema, synchronously.

        records is a list of objects keyed by the schema's fields. Identical records are not added twice. If an
        import or migration is running, it waits for it (up to wait_seconds). For more data, use upload_file.
        Returns the accepted, rejected (grouped by cause) and duplicate counts. Next: fix and append the rejected
        records; a running batch needs a sync to see new datapoints.
        """
        return await run_tool(
            holder,
            lambda d: appends.append_records(
                d, dataset_id, records, wait_seconds=wait_seconds, progress=_progress(ctx)
            ),
            ctx,
        )
