"""The tools (docs/architecture.md, Tools): names, parameters and hints; each docstring is what an agent reads.

Each tool is one call into an operation (`prolific_mcp.operations`) over the server's `Deps`, declared here;
its arguments are checked first (`server/arguments.py`) and its result converted for the client
(`server/outputs.py`): the text block is the human summary and the structured content the result model. Failures
become ToolErrors whose text says what to do (and never carries a secret).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from prolific_mcp.operations import appends, checks, datasets, render, schemas, uploads
from prolific_mcp.operations.deps import Deps, Progress
from prolific_mcp.operations.progress import throttled
from prolific_mcp.operations.results import (
    AppendRecordsResult,
    DatasetResult,
    DatasetsResult,
    ImportResult,
    NextCall,
    Result,
    SetSchemaResult,
    SuggestSchemaResult,
    ValidateResult,
    WorkspacesResult,
)
from prolific_mcp.records.schema import MAX_APPEND_RECORDS
from prolific_mcp.server.arguments import CheckedTool, clamp_wait, input_schema, plain_schema
from prolific_mcp.server.lifespan import SANDBOX_LINE, AppState
from prolific_mcp.server.outputs import run_tool, safe_text, tool_name

R = TypeVar("R", bound=Result)

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
LOCAL_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
CREATE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
"""A write that makes something new each time (create_dataset)."""
REPLACE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)
"""A write that may change or drop what is there (set_schema)."""
ADD = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
"""A write that adds data and is safe to repeat (upload_file resumes, append_records skips duplicates)."""


class FieldInput(BaseModel):
    """One schema field, as the tools take it and return it."""

    model_config = ConfigDict(extra="forbid")

    key: Annotated[str, Field(description="the key the records use for this value, e.g. review")]
    type: Annotated[
        Literal["text", "image_url", "audio_url", "video_url", "metadata", "task_group_id"],
        Field(
            description="text, image_url, audio_url and video_url are shown to participants; metadata is kept but "
            "hidden; task_group_id groups records (at most one field)"
        ),
    ]
    label: Annotated[str, Field(description="what reviewers see as the field's name; empty for none")] = ""


# ----- parameters (one description each; the examples are what argument errors show) ----------------------------

DatasetId = Annotated[str, Field(description="The dataset's id (from create_dataset, list_datasets or get_dataset).")]
ImportId = Annotated[str, Field(description="The import's id (from upload_file or get_dataset).")]
FilePath = Annotated[
    str,
    Field(description="A .jsonl, .ndjson or .csv file inside the allowed directories (relative to the first)."),
]
Fields = Annotated[
    list[FieldInput],
    Field(
        description="The schema's fields: a list of {key, type, label} (suggest_schema returns one ready to pass; "
        "get_dataset returns the same shape)."
    ),
]
Strict = Annotated[bool, Field(description="true rejects records missing any field; false lets fields be absent.")]
Records = Annotated[
    list[dict[str, Any]],
    Field(
        description=f"1 to {MAX_APPEND_RECORDS:,} records (≤ 1 MiB in all), each an object keyed by the schema's "
        "fields. The objects are open (any keys), so this parameter cannot be a strict schema."
    ),
]

Wait = Annotated[
    float,
    Field(
        description="Seconds to wait for the outcome; 0 answers at once with the next call. A value outside the "
        "bounds is clamped, and the result says so."
    ),
]
"""Its bounds and default are the configured ones, written into the published schema (`input_schema`)."""


def _progress(ctx: Context) -> Callable[[float, str], Awaitable[None]]:
    """The call's progress reporter, behind the one throttle (operations/progress.py): rounded, rising, not noisy."""

    async def report(value: float, message: str) -> None:
        await ctx.report_progress(value, 100, safe_text(message))

    return throttled(report)


def _fields(fields: Sequence[BaseModel]) -> list[dict[str, str]]:
    """Fields (as taken, FieldInput, or as returned, FieldInfo) in the list shape both use."""
    return [f.model_dump() for f in fields]


# ----- the tools ----------------------------------------------------------------------------------------------


def build_tools(holder: AppState, *, read_only: bool, default_wait: float, max_wait: float) -> list[Tool]:
    """The tools (write tools only when not read-only), ready for `MCPServer(tools=...)`."""
    tools: list[Tool] = []
    prefix = f"{SANDBOX_LINE} " if holder.mode == "sandbox" else ""

    def tool(title: str, annotations: ToolAnnotations) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            made = CheckedTool.from_function(
                fn, title=title, description=inspect.cleandoc(fn.__doc__ or ""), annotations=annotations
            )
            assert isinstance(made, CheckedTool)
            made.error_prefix = prefix
            made.parameters = input_schema(made.parameters, max_wait)
            if made.fn_metadata.output_schema is not None:
                made.fn_metadata.output_schema = plain_schema(made.fn_metadata.output_schema, close_objects=False)
            tools.append(made)
            return fn

        return add

    async def waiting(
        ctx: Context,
        wait_seconds: float,
        operation: Callable[[Deps, float, Progress], Awaitable[R]],
        *,
        then: Callable[[R], NextCall | None] | None = None,
    ) -> CallToolResult:
        """Run an operation that waits: wait_seconds clamped to the maximum (the result says so), progress reported
        to the caller, and the tool's own name on an unexpected failure."""
        wait, adjusted = clamp_wait(wait_seconds, max_wait)
        progress = _progress(ctx)
        return await run_tool(
            holder,
            lambda d: operation(d, wait, progress),
            ctx,
            adjusted=adjusted,
            then=then,
            tool=tool_name(operation),
        )

    @tool("List workspaces", READ)
    async def list_workspaces() -> Annotated[CallToolResult, WorkspacesResult]:
        """List the Prolific workspaces this account belongs to, with their ids.

        Use it to find the workspace_id for create_dataset (needed only when there is more than one workspace and
        PROLIFIC_WORKSPACE_ID is not set). Returns each workspace's id and title, and the default one.
        """
        return await run_tool(holder, datasets.list_workspaces)

    @tool("List datasets", READ)
    async def list_datasets(
        workspace_id: Annotated[str, Field(description="Only this workspace's datasets; empty for all.")] = "",
    ) -> Annotated[CallToolResult, DatasetsResult]:
        """List the datasets this server knows: those created or used through it, and those attached to batches.

        Prolific has no endpoint that lists datasets, so a dataset created elsewhere and not used by any batch only
        appears after get_dataset is called with its id. Next: get_dataset(dataset_id) for a dataset's schema and
        imports.
        """
        return await run_tool(holder, lambda d: datasets.list_datasets(d, workspace_id or None))

    @tool("Get dataset", READ)
    async def get_dataset(dataset_id: DatasetId) -> Annotated[CallToolResult, DatasetResult]:
        """Show one dataset: name, version (4 with a schema and import jobs, or legacy 3), datapoint count, the
        schema (fields as a list of {key, type, label}, the shape set_schema takes), and its latest imports.

        Next: upload_file to add data, set_schema to change fields, get_import_status to follow an import.
        """
        return await run_tool(holder, lambda d: datasets.get_dataset(d, dataset_id))

    @tool("Get import status", READ)
    async def get_import_status(
        dataset_id: DatasetId, import_id: ImportId, ctx: Context, wait_seconds: Wait = default_wait
    ) -> Annotated[CallToolResult, ImportResult]:
        """Follow an import until it finishes or wait_seconds pass (0 answers at once), with progress.

        Returns the status; when finished (complete, partial, failed, pending_schema) the counts and the rejected
        records grouped by cause with record numbers and fixes (with excerpts when this machine uploaded the
        file). Read-only: it never writes files. Next: the result's next_call (this call again while running).
        """
        return await waiting(
            ctx,
            wait_seconds,
            lambda d, wait, progress: uploads.get_import_status(
                d, dataset_id, import_id, wait_seconds=wait, progress=progress
            ),
        )

    @tool("Suggest a schema", LOCAL_READ)
    async def suggest_schema(
        path: FilePath,
        format: Annotated[
            str, Field(description="jsonl or csv, when the file name's extension does not say; empty otherwise.")
        ] = "",
    ) -> Annotated[CallToolResult, SuggestSchemaResult]:
        """Suggest dataset fields and types from a sample of a local .jsonl/.ndjson/.csv file.

        URL columns become image_url, audio_url or video_url by extension; id-like and META_ columns metadata;
        task_group_id only when a column is plainly named so; other text columns text. The fields come as a list of
        {key, type, label}, ready to pass to create_dataset or set_schema. Start here when making a dataset from a
        file; next: create_dataset(name, fields).
        """

        def then(result: SuggestSchemaResult) -> NextCall:
            return render.call("create_dataset", ["name"], fields=_fields(result.fields), strict=result.strict)

        return await run_tool(holder, lambda d: checks.suggest_schema(d, path, format or None), then=then)

    @tool("Validate a file", READ)
    async def validate_file(
        path: FilePath,
        dataset_id: Annotated[str, Field(description="Check against this dataset's schema; or give fields.")] = "",
        fields: Annotated[
            list[FieldInput],
            Field(description="Check against these fields (a list of {key, type, label}) instead of a dataset's."),
        ] = [],  # noqa: B006 (never mutated)
        strict: Strict = False,
        format: Annotated[
            str, Field(description="jsonl or csv, when the file name's extension does not say; empty otherwise.")
        ] = "",
    ) -> Annotated[CallToolResult, ValidateResult]:
        """Check a local data file against a dataset's schema (dataset_id) or given fields and strict, without
        importing anything.

        Returns the record count, whether the file can be imported at all, and the records that would be rejected,
        grouped by cause with record and line numbers. Next: fix the file, or upload_file.
        """
        listed = _fields(fields) if fields else None

        def then(result: ValidateResult) -> NextCall:
            chosen = {"format": format} if format else {}
            if not result.ok or result.expected_rejections:
                if dataset_id:
                    return render.call("validate_file", path=path, dataset_id=dataset_id, **chosen)
                return render.call("validate_file", path=path, fields=listed, strict=strict, **chosen)
            if dataset_id:
                return render.call("upload_file", dataset_id=dataset_id, path=path, **chosen)
            return render.call("create_dataset", ["name"], fields=listed, strict=strict)

        return await run_tool(
            holder,
            lambda d: checks.validate_file(d, path, dataset_id or None, listed, strict, format or None),
            then=then,
        )

    if read_only:
        return tools

    @tool("Create dataset", CREATE)
    async def create_dataset(
        name: Annotated[str, Field(description="The dataset's name, as people will see it.")],
        ctx: Context,
        workspace_id: Annotated[
            str, Field(description="The workspace (list_workspaces); empty for PROLIFIC_WORKSPACE_ID or the only one.")
        ] = "",
        fields: Annotated[
            list[FieldInput],
            Field(
                description="The schema's fields, a list of {key, type, label} (suggest_schema gives them); empty "
                "for a dataset without a schema yet."
            ),
        ] = [],  # noqa: B006 (never mutated)
        strict: Strict = False,
    ) -> Annotated[CallToolResult, DatasetResult]:
        """Create an AI Task Builder dataset (with a schema when fields are given) and return its id.

        fields is a list of {key, type, label}; types: text, image_url, audio_url, video_url, metadata,
        task_group_id (at most one). Get them from suggest_schema. strict=true rejects records missing any field.
        Without fields the dataset has no schema yet and uploads wait in pending_schema until set_schema.
        workspace_id defaults to PROLIFIC_WORKSPACE_ID or the only workspace. The workspace decides the version: one
        without typed datasets makes V3 (CSV only, no schema) and refuses fields. Each call creates a new dataset
        (Prolific cannot delete one), and unknown arguments are refused. Next: upload_file(dataset_id, path).
        """

        def then(result: DatasetResult) -> NextCall:
            return render.after_create(result.id, schemaless=result.version == 4 and not result.fields)

        listed = _fields(fields)
        return await run_tool(
            holder, lambda d: datasets.create_dataset(d, name, workspace_id or None, listed, strict), ctx, then=then
        )

    @tool("Set schema", REPLACE)
    async def set_schema(
        dataset_id: DatasetId,
        fields: Fields,
        strict: Annotated[
            bool, Field(description="true rejects records missing any field; false lets them be absent.")
        ],
        ctx: Context,
        dry_run: Annotated[bool, Field(description="true shows the diff only; nothing is changed.")] = False,
        allow_destructive: Annotated[
            bool, Field(description="true allows removing or retyping fields of a dataset that has data.")
        ] = False,
        wait_seconds: Wait = default_wait,
    ) -> Annotated[CallToolResult, SetSchemaResult]:
        """Replace a V4 dataset's whole schema (fields and strict), after checking it locally.

        Shows the diff against the current schema; dry_run=true stops there. On a dataset with data, removing a
        field or changing a type re-checks existing values (they may become null) and is refused unless
        allow_destructive=true; the task_group_id field cannot move. Waits for the schema migration (with
        progress) up to wait_seconds, then re-checks imports parked in pending_schema. Next: upload_file, or
        get_dataset to see the schema in force.
        """
        listed = _fields(fields)
        return await waiting(
            ctx,
            wait_seconds,
            lambda d, wait, progress: schemas.set_schema(
                d,
                dataset_id,
                listed,
                strict,
                dry_run=dry_run,
                allow_destructive=allow_destructive,
                wait_seconds=wait,
                progress=progress,
            ),
        )

    @tool("Upload file", ADD)
    async def upload_file(
        dataset_id: DatasetId,
        ctx: Context,
        path: Annotated[
            str, Field(description="A .jsonl, .ndjson or .csv file inside the allowed directories; or give content.")
        ] = "",
        content: Annotated[
            str, Field(description="Small data (≤ 1 MiB) given inline, with filename; or give path.")
        ] = "",
        filename: Annotated[str, Field(description="The name for inline content, e.g. records.jsonl.")] = "",
        format: Annotated[
            str, Field(description="jsonl or csv, when the file name's extension does not say; empty otherwise.")
        ] = "",
        wait_seconds: Wait = default_wait,
        force: Annotated[
            bool, Field(description="true uploads again a file already imported into this dataset.")
        ] = False,
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
        return await waiting(
            ctx,
            wait_seconds,
            lambda d, wait, progress: uploads.upload_file(
                d,
                dataset_id,
                path or None,
                content or None,
                filename or None,
                format or None,
                wait_seconds=wait,
                force=force,
                progress=progress,
            ),
        )

    @tool("Append records", ADD)
    async def append_records(
        dataset_id: DatasetId, records: Records, ctx: Context, wait_seconds: Wait = default_wait
    ) -> Annotated[CallToolResult, AppendRecordsResult]:
        """Append up to 1,000 records (≤ 1 MiB) to a V4 dataset that has a schema, synchronously.

        records is a list of objects keyed by the schema's fields; the objects are open by nature, so this one
        parameter is not strict-schema compatible. Identical records are not added twice. If an import or
        migration is running, it waits for it (up to wait_seconds). For more data, use upload_file. Returns the
        accepted, rejected (grouped by cause) and duplicate counts. Next: fix and append the rejected records; a
        running batch needs a sync to see new datapoints.
        """

        def then(result: AppendRecordsResult) -> NextCall | None:
            if result.rejected_count:
                return render.call("append_records", ["records"], dataset_id=dataset_id)
            return None

        return await waiting(
            ctx,
            wait_seconds,
            lambda d, wait, progress: appends.append_records(
                d, dataset_id, records, wait_seconds=wait, progress=progress
            ),
            then=then,
        )

    return tools
