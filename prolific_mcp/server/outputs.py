"""Tool results as clients see them: the text block (the human summary), resource links and the structured content,
which carries the same account, the next call as data and as text, and the sandbox notice (some clients show the
model only one of the two); every string cleaned of invisible characters and secrets (`safe_text`, `safe_data`).

`run_tool` runs one operation and turns every expected failure into a ToolError whose text says what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ResourceLink, TextContent

from prolific_mcp.api.errors import ProlificError
from prolific_mcp.ids import InvalidIdError
from prolific_mcp.operations import render
from prolific_mcp.operations.deps import Deps, OperationError
from prolific_mcp.operations.results import (
    AppendRecordsResult,
    DatasetResult,
    ImportResult,
    NextCall,
    Result,
    SetSchemaResult,
    structured,
)
from prolific_mcp.server.lifespan import SANDBOX_LINE, AppState
from prolific_mcp.settings import StateDirError
from prolific_mcp.text import for_agent

log = logging.getLogger("prolific_mcp.server")
R = TypeVar("R", bound=Result)


def _links(result: Result) -> list[ResourceLink]:
    dataset_id = getattr(result, "dataset_id", None) or (result.id if isinstance(result, DatasetResult) else None)
    if not dataset_id:
        return []
    uri = f"prolific://datasets/{dataset_id}"
    links = [ResourceLink(type="resource_link", uri=uri, name=f"dataset {dataset_id}", mime_type="text/markdown")]
    import_id = getattr(result, "import_id", None)
    if import_id:
        uri += f"/imports/{import_id}"
        links.append(
            ResourceLink(type="resource_link", uri=uri, name=f"import {import_id}", mime_type="application/json")
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
    tool: str | None = None,
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
        tool = tool or tool_name(call)
        log.exception("%s failed unexpectedly", tool)
        raise ToolError(prefix + safe_text(render.unexpected_failure(tool, exc))) from None
    if result.next_call is None and then is not None:
        result.next_call = then(result)
    if ctx is not None:
        for uri in changed_uris(result):
            await ctx.notify_resource_updated(uri)
    return to_call_result(result, holder.take_notices(), adjusted)


def tool_name(call: Callable[..., Any]) -> str:
    """The tool a `run_tool` call serves, from the operation's or the tool's own name (for unexpected errors)."""
    parts = [p for p in getattr(call, "__qualname__", "").split(".") if p not in ("<locals>", "<lambda>")]
    return parts[-1] if parts else "the tool"
