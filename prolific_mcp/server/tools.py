"""The tools (docs/architecture.md, Tools): names, parameters and hints; each docstring is what an agent reads.

Each tool is one call into an operation (`prolific_mcp.operations`) over the server's `Deps`; its text block is
the human summary and its structured content the result model, which carries the same account, the next call as
data and as text, and the sandbox notice (some clients show the model only one of the two). Failures become
ToolErrors whose text says what to do (and never carries a secret).

Arguments are checked here against the published input schema before anything runs (`CheckedTool`): an unknown
argument is refused, naming the valid ones and the one meant by a near miss, and every argument error names the
argument, the shape expected and an example, never a validation-library dump (docs/architecture.md, Rules an agent
can rely on).
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ResourceLink, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prolific_mcp.api.errors import ProlificError
from prolific_mcp.ids import InvalidIdError
from prolific_mcp.operations import appends, checks, datasets, render, schemas, uploads
from prolific_mcp.operations.deps import FIELDS_EXAMPLE, Deps, OperationError
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
    field_list,
    structured,
)
from prolific_mcp.records.schema import MAX_APPEND_RECORDS
from prolific_mcp.server.lifespan import SANDBOX_LINE, AppState
from prolific_mcp.settings import StateDirError
from prolific_mcp.text import for_agent, one_line

if TYPE_CHECKING:
    from mcp.server.context import LifespanContextT, RequestT

log = logging.getLogger("prolific_mcp.server")
R = TypeVar("R", bound=Result)

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
LOCAL_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


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

EXAMPLES: dict[str, str] = {
    "dataset_id": '"01JD8Y6T4M8R3N7C5QZ0W2XK9A"',
    "import_id": '"01JD8Y9A2B3C4D5E6F7G8H9J0K"',
    "workspace_id": '"6655c3e2a1b2c3d4e5f60701"',
    "name": '"Product reviews"',
    "path": '"reviews.jsonl"',
    "content": '"{\\"review\\": \\"Great\\"}\\n"',
    "filename": '"records.jsonl"',
    "format": '"jsonl"',
    "fields": FIELDS_EXAMPLE,
    "strict": "false",
    "records": '[{"review": "Great", "id": "r1"}]',
    "force": "true",
    "dry_run": "true",
    "allow_destructive": "true",
}

ALIASES: dict[str, str] = {
    "schema": "fields",
    "columns": "fields",
    "field": "fields",
    "overwrite": "force",
    "replace": "force",
    "reupload": "force",
    "file": "path",
    "file_path": "path",
    "filepath": "path",
    "filename": "path",
    "dataset": "dataset_id",
    "datasetid": "dataset_id",
    "id": "dataset_id",
    "import": "import_id",
    "importid": "import_id",
    "workspace": "workspace_id",
    "workspaceid": "workspace_id",
    "timeout": "wait_seconds",
    "timeout_seconds": "wait_seconds",
    "wait": "wait_seconds",
    "data": "records",
    "rows": "records",
    "items": "records",
    "fmt": "format",
    "title": "name",
    "dryrun": "dry_run",
    "text": "content",
}
"""Argument names agents reach for (the API's own, or another tool's), and the one each means here."""

ITEM_ALIASES: dict[str, str] = {"name": "key", "field": "key", "id": "key", "kind": "type", "title": "label"}


NOTHING_SENT = "Nothing was sent."


class ArgumentError(Exception):
    """The arguments do not fit the tool's input schema; the message says which, what is expected, an example."""


def _shape(spec: Mapping[str, Any]) -> str:
    kind = spec.get("type")
    if kind == "boolean":
        return "true or false"
    if kind == "number":
        low, high = spec.get("minimum"), spec.get("maximum")
        return f"a number of seconds from {low:g} to {high:g}" if low is not None and high is not None else "a number"
    if kind == "array":
        items = spec.get("items", {})
        if "properties" in items:
            return "a list of {" + ", ".join(items["properties"]) + "} objects"
        return "a list of objects"
    if "enum" in spec:
        return "one of " + ", ".join(str(v) for v in spec["enum"])
    return "a string"


def _example(name: str, spec: Mapping[str, Any]) -> str:
    if name in EXAMPLES:
        return f"{name}={EXAMPLES[name]}"
    default = spec.get("default")
    if spec.get("type") == "number":
        return f"{name}={default if default is not None else 30:g}"
    return f"{name}={json.dumps(default)}" if default is not None else name


def _expected(name: str, spec: Mapping[str, Any]) -> str:
    return f"{name} must be {_shape(spec)}, e.g. {_example(name, spec)}"


def _shown(value: object) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return one_line(text, 60)


def _intended(name: str, valid: Sequence[str], aliases: Mapping[str, str]) -> str | None:
    folded = name.lower().replace("-", "_")
    target = aliases.get(folded) or aliases.get(folded.replace("_", ""))
    if target in valid:
        return target
    close = difflib.get_close_matches(folded, list(valid), n=1, cutoff=0.7)
    return close[0] if close else None


def _unknown(tool: str, name: str, value: object, props: Mapping[str, Any]) -> str:
    valid = list(props)
    listed = ", ".join(valid) if valid else "no arguments"
    meant = _intended(name, valid, ALIASES)
    hint = ""
    if meant is not None:
        hint = f"; use {meant} instead, e.g. {_example(meant, props[meant])}"
        if meant == "fields" and isinstance(value, Mapping):
            fields = value.get("fields", value)
            if isinstance(fields, Mapping) and fields:
                hint = f"; use fields (a list of {{key, type, label}}) instead: fields={json.dumps(field_list(fields))}"
                if isinstance(value.get("strict"), bool):
                    hint += f", strict={json.dumps(value['strict'])}"
    return f"{tool} has no argument '{one_line(name, 40)}'{hint}. Its arguments are: {listed}"


def _json_container(name: str, spec: Mapping[str, Any], value: str) -> object:
    """An object or array argument sent as a JSON string (some clients do), parsed."""
    try:
        return json.loads(value)
    except ValueError:
        raise ArgumentError(f"{name} is not valid JSON: {_expected(name, spec)}") from None


def _check_value(name: str, spec: Mapping[str, Any], value: object, *, required: bool) -> object:
    if value is None:
        leave = "it is required" if required else "leave it out to use the default"
        raise ArgumentError(f"{name} is null: {_expected(name, spec)} ({leave})")
    kind = spec.get("type")
    if kind == "string":
        if not isinstance(value, str):
            raise ArgumentError(f"{name} is {_shown(value)}: {_expected(name, spec)}")
        if "enum" in spec and value not in spec["enum"]:
            raise ArgumentError(f"{name} is {_shown(value)}: {_expected(name, spec)}")
        return value
    if kind == "boolean":
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise ArgumentError(f"{name} is {_shown(value)}: {_expected(name, spec)}")
        return value
    if kind == "number":
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            raise ArgumentError(f"{name} is {_shown(value)}: {_expected(name, spec)}")
        return number
    if kind == "array":
        if isinstance(value, str):
            value = _json_container(name, spec, value)
        if name == "fields" and isinstance(value, Mapping):
            converted = field_list(value) if all(isinstance(v, Mapping) for v in value.values()) else []
            again = f"pass fields={json.dumps(converted)}" if converted else f"e.g. fields={FIELDS_EXAMPLE}"
            raise ArgumentError(
                f"fields is an object keyed by field name: fields is a list of {{key, type, label}} objects; {again}"
            )
        if not isinstance(value, list):
            raise ArgumentError(f"{name} is {_shown(value)}: {_expected(name, spec)}")
        items = spec.get("items", {})
        return [_check_item(name, items, n, item) for n, item in enumerate(value, 1)]
    return value


def _check_item(name: str, spec: Mapping[str, Any], n: int, item: object) -> object:
    """One element of a list of objects: an object; with declared properties, only those, each of its type."""
    if not isinstance(item, Mapping):
        shape = _shape({"type": "array", "items": spec})
        raise ArgumentError(
            f"{name} item {n} is {_shown(item)}, not an object: {name} must be {shape}, e.g. {_example(name, {})}"
        )
    props: Mapping[str, Any] = spec.get("properties", {})
    if not props:
        return dict(item)
    for key in item:
        if key not in props:
            meant = _intended(str(key), list(props), ITEM_ALIASES)
            hint = f" (did you mean {meant}?)" if meant else ""
            raise ArgumentError(
                f"{name} item {n} has the key '{one_line(str(key), 40)}'{hint}; each item takes only "
                f"{', '.join(props)}, e.g. {_example(name, {})}"
            )
    for key in spec.get("required", []):
        if key not in item:
            raise ArgumentError(f"{name} item {n} has no '{key}': each item needs {', '.join(spec['required'])}")
    out: dict[str, object] = {}
    for key, value in item.items():
        sub = props[key]
        if sub.get("type") == "string" and (not isinstance(value, str) or value not in sub.get("enum", [value])):
            allowed = f"one of {', '.join(sub['enum'])}" if "enum" in sub else "a string"
            raise ArgumentError(f"{name} item {n}: {key} is {_shown(value)}; it must be {allowed}")
        out[key] = value
    return out


def check_arguments(tool: str, schema: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments checked against the tool's input schema (JSON strings for objects and arrays, and strings for
    numbers and booleans, are accepted and converted), or ArgumentError saying what is wrong."""
    props: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    for name, value in raw.items():
        if name not in props:
            raise ArgumentError(_unknown(tool, name, value, props))
    missing = [name for name in props if name in required and name not in raw]
    if missing:
        raise ArgumentError("; ".join(f"{name} is missing: {_expected(name, props[name])}" for name in missing))
    return {name: _check_value(name, props[name], value, required=name in required) for name, value in raw.items()}


def from_validation(tool: str, schema: Mapping[str, Any], exc: ValidationError) -> str:
    """A validation failure the checks above let through, worded like them (never the library's dump)."""
    props: Mapping[str, Any] = schema.get("properties", {})
    names = sorted({str(err["loc"][0]) for err in exc.errors() if err.get("loc")})
    said = [_expected(n, props[n]) for n in names if n in props]
    return f"{tool}: " + ("; ".join(said) if said else "the arguments do not fit the tool's input schema")


class CheckedTool(Tool):
    """A tool whose raw arguments are checked before the SDK's argument model sees them: the model drops unknown
    arguments silently, and its errors are validation dumps."""

    error_prefix: str = Field(default="", exclude=True, description="the SANDBOX line in sandbox mode")

    async def run(
        self,
        arguments: dict[str, Any],
        context: Context[LifespanContextT, RequestT],
        convert_result: bool = False,
    ) -> Any:
        try:
            checked = check_arguments(self.name, self.parameters, arguments)
        except ArgumentError as exc:
            said = safe_text(str(exc)).rstrip(".")
            raise ToolError(f"Error executing tool {self.name}: {self.error_prefix}{said}. {NOTHING_SENT}") from None
        try:
            return await super().run(checked, context, convert_result)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                said = from_validation(self.name, self.parameters, exc.__cause__)
                raise ToolError(
                    f"Error executing tool {self.name}: {self.error_prefix}{said}. {NOTHING_SENT}"
                ) from None
            raise


# ----- schemas as clients see them ----------------------------------------------------------------------------


def plain_schema(schema: Mapping[str, Any], *, close_objects: bool) -> dict[str, Any]:
    """A schema with every `$ref` inlined, no `$defs` and no generated titles; with `close_objects`, every object
    with declared properties gets `additionalProperties: false` (strict clients need it)."""
    defs: Mapping[str, Any] = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, Mapping):
            return node
        if "$ref" in node:
            target = defs[str(node["$ref"]).rsplit("/", 1)[-1]]
            return walk({**target, **{k: v for k, v in node.items() if k != "$ref"}})
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("$defs", "title"):
                continue
            out[key] = {k: walk(v) for k, v in value.items()} if key == "properties" else walk(value)
        if close_objects and out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out

    return dict(walk(schema))


def input_schema(schema: Mapping[str, Any], max_wait: float) -> dict[str, Any]:
    """The published input schema: plain, closed, and wait_seconds with its bounds."""
    plain = plain_schema(schema, close_objects=True)
    plain["type"] = "object"
    plain.setdefault("properties", {})
    plain["additionalProperties"] = False
    wait = plain["properties"].get("wait_seconds")
    if wait is not None:
        wait["minimum"], wait["maximum"] = 0, max_wait
        wait["description"] = (
            f"Seconds to wait for the outcome, from 0 to {max_wait:g} (default {wait.get('default', 0):g}); 0 answers "
            "at once with the next call. A value outside is clamped, and the result says so."
        )
    return plain


# ----- results ----------------------------------------------------------------------------------------------------


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
    """A structured value with every string passed through `safe_text` (keys too)."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_text(k) if isinstance(k, str) else k: safe_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_data(v) for v in value]
    return value


def to_call_result(result: Result, notice: str | None = None, adjusted: Sequence[str] = ()) -> CallToolResult:
    """The text block (the SANDBOX line in sandbox mode, any notice, any adjusted argument, the summary and the
    'Next:' call), resource links, and the structured content, which carries the same text as `summary`, the
    next call as data and as text, and the notice; every string cleaned of invisible characters and secrets."""
    notices = ([SANDBOX_LINE] if result.mode == "sandbox" else []) + ([notice] if notice else [])
    step = render.call_text(result.next_call) if result.next_call is not None else None
    body = result.text
    if step is not None and step not in body:
        lead = "Then" if body.startswith("Next:") or "\nNext:" in body else "Next"
        body = f"{body}\n{lead}: {step}" if body else f"Next: {step}"
    text = safe_text("\n".join([*notices, *(f"Note: {a}" for a in adjusted), body]))
    data = structured(result)
    data.update(next_step=step, notice="\n".join(notices) or None, adjusted_arguments=list(adjusted))
    data = safe_data(data)
    data["summary"] = text
    content: list[Any] = [TextContent(type="text", text=text), *_links(result)]
    return CallToolResult(content=content, structured_content=data)


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
    holder: AppState,
    call: Callable[[Deps], Awaitable[R]],
    ctx: Context | None = None,
    *,
    adjusted: Sequence[str] = (),
    then: Callable[[R], NextCall | None] | None = None,
) -> CallToolResult:
    """Run one operation; every expected failure becomes a ToolError an agent can act on. `then` names the next
    call when the operation has not (from the call's own arguments).

    After a change, subscribers of the changed resources are told (2026-07-28 `subscriptions/listen`).
    """
    prefix = f"{SANDBOX_LINE} " if holder.mode == "sandbox" else ""
    try:
        service = await holder.get()
        result = await call(service)
    except (OperationError, ProlificError, InvalidIdError, StateDirError) as exc:
        notice = holder.take_notices()
        raise ToolError(prefix + (f"{notice} " if notice else "") + safe_text(render.error_text(exc))) from None
    except Exception as exc:  # never a bare "Error executing tool": name the operation and the next step
        tool = _tool_name(call)
        log.exception("%s failed unexpectedly", tool)
        raise ToolError(prefix + safe_text(render.unexpected_failure(tool, exc))) from None
    if result.next_call is None and then is not None:
        result.next_call = then(result)
    if ctx is not None:
        for uri in changed_uris(result):
            await ctx.notify_resource_updated(uri)
    return to_call_result(result, holder.take_notices(), adjusted)


def _tool_name(call: Callable[..., Any]) -> str:
    """The tool a `run_tool` call serves, from the operation's or the tool's own name (for unexpected errors)."""
    parts = [p for p in getattr(call, "__qualname__", "").split(".") if p not in ("<locals>", "<lambda>")]
    return parts[-1] if parts else "the tool"


def clamp_wait(wait_seconds: float, max_wait: float) -> tuple[float, list[str]]:
    """wait_seconds within 0..max_wait, and what was said about it when it was not."""
    if wait_seconds > max_wait:
        said = f"wait_seconds={wait_seconds:g} is over the maximum of {max_wait:g}, so this call waited at most "
        said += f"{max_wait:g} s."
        return max_wait, [said]
    if wait_seconds < 0:
        return 0.0, [f"wait_seconds={wait_seconds:g} is below 0, so 0 was used (an answer at once)."]
    return wait_seconds, []


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
        wait, adjusted = clamp_wait(wait_seconds, max_wait)
        return await run_tool(
            holder,
            lambda d: uploads.get_import_status(d, dataset_id, import_id, wait_seconds=wait, progress=_progress(ctx)),
            ctx,
            adjusted=adjusted,
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

    @tool(
        "Create dataset",
        ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True),
    )
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

    @tool(
        "Set schema",
        ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True),
    )
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
        wait, adjusted = clamp_wait(wait_seconds, max_wait)
        listed = _fields(fields)
        return await run_tool(
            holder,
            lambda d: schemas.set_schema(
                d,
                dataset_id,
                listed,
                strict,
                dry_run=dry_run,
                allow_destructive=allow_destructive,
                wait_seconds=wait,
                progress=_progress(ctx),
            ),
            ctx,
            adjusted=adjusted,
        )

    @tool(
        "Upload file",
        ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True),
    )
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
        wait, adjusted = clamp_wait(wait_seconds, max_wait)
        return await run_tool(
            holder,
            lambda d: uploads.upload_file(
                d,
                dataset_id,
                path or None,
                content or None,
                filename or None,
                format or None,
                wait_seconds=wait,
                force=force,
                progress=_progress(ctx),
            ),
            ctx,
            adjusted=adjusted,
        )

    @tool(
        "Append records",
        ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True),
    )
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
        wait, adjusted = clamp_wait(wait_seconds, max_wait)

        def then(result: AppendRecordsResult) -> NextCall | None:
            if result.rejected_count:
                return render.call("append_records", ["records"], dataset_id=dataset_id)
            return None

        return await run_tool(
            holder,
            lambda d: appends.append_records(d, dataset_id, records, wait_seconds=wait, progress=_progress(ctx)),
            ctx,
            adjusted=adjusted,
            then=then,
        )

    return tools
