"""Next calls (docs/architecture.md, Rules an agent can rely on): the call as data (`NextCall`) and as an agent would
type it, and what each tool's outcome asks for next.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import orjson

from prolific_mcp.operations.results import DatasetResult, NextCall, field_list
from prolific_mcp.records.suggest import SuggestedSchema
from prolific_mcp.text import visible_json

NEEDS: Final = {
    "path": "<your .jsonl or .csv file>",
    "name": "<a name for the dataset>",
    "fields": "<the fields>",
    "records": "<the corrected records>",
    "content": "<the same content>",
}
"""How the text form shows an argument only the agent can fill in."""


MAX_CALL_TEXT: Final = 900
"""A call written out longer than this shows its longest argument as a pointer into next_call.arguments."""


def call(tool: str, needs: Sequence[str] = (), **arguments: object) -> NextCall:
    """The next call as data: the tool, its arguments filled in, and the ones only the agent knows."""
    return NextCall(tool=tool, arguments={k: _plain(v) for k, v in arguments.items()}, needs=list(needs))


def _plain(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def call_text(next_call: NextCall) -> str:
    """The call written as an agent would type it: tool(key=value, ...), JSON values, placeholders for `needs`."""
    shown = {k: orjson.dumps(v).decode() for k, v in next_call.arguments.items()}
    while True:
        parts = [f"{k}={visible_json(v)}" for k, v in shown.items()]
        parts += [f"{k}={NEEDS.get(k, '<' + k + '>')}" for k in next_call.needs]
        text = f"{next_call.tool}({', '.join(parts)})"
        longest = max(shown, key=lambda k: len(shown[k]), default=None)
        if len(text) <= MAX_CALL_TEXT or longest is None or shown[longest].startswith("<see"):
            return text
        shown[longest] = f"<see next_call.arguments.{longest}>"


def next_call(
    dataset_id: str,
    import_id: str | None,
    *,
    uploading: bool,
    wait: float,
    path: str | None = None,
    filename: str | None = None,
) -> NextCall:
    """The exact call that carries on where this one stopped, with the configured wait: get_import_status once the
    file is with Prolific, else the same upload_file (which resumes instead of uploading twice)."""
    if import_id and (not uploading or path is None):
        return call("get_import_status", dataset_id=dataset_id, import_id=import_id, wait_seconds=wait)
    if path is not None:
        return call("upload_file", dataset_id=dataset_id, path=path, wait_seconds=wait)
    return call("upload_file", ["content"], dataset_id=dataset_id, filename=filename or "", wait_seconds=wait)


def after_import(
    dataset_id: str,
    status: str,
    *,
    path: str | None,
    rejected_file: str | None = None,
    suggested_fields: list[dict[str, str]] | None = None,
) -> NextCall | None:
    """What a finished import asks for next: the fixed rejected records (partial), the corrected file (failed), a
    schema (pending_schema); nothing after a complete import."""
    if status == "partial":
        if rejected_file is not None:
            return call("upload_file", dataset_id=dataset_id, path=rejected_file)
        return call("upload_file", ["path"], dataset_id=dataset_id)
    if status in ("failed", "error"):
        if path is not None:
            return call("upload_file", dataset_id=dataset_id, path=path)
        return call("upload_file", ["path"], dataset_id=dataset_id)
    if status == "pending_schema":
        if suggested_fields:
            return call("set_schema", dataset_id=dataset_id, fields=suggested_fields, strict=False)
        return call("set_schema", ["fields"], dataset_id=dataset_id, strict=False)
    return None


RUNNING_IMPORT: Final = frozenset({"queued", "processing"})


def after_view(result: DatasetResult) -> NextCall | None:
    """What a dataset's view asks for next: following its running import, or a schema for a V4 dataset without
    one; nothing otherwise."""
    running = next((i for i in result.imports if i.status in RUNNING_IMPORT), None)
    if running is not None:
        return call("get_import_status", dataset_id=result.id, import_id=running.import_id)
    if result.version == 4 and not result.fields:
        return call("set_schema", ["fields"], dataset_id=result.id, strict=False)
    return None


def after_schema(
    dataset_id: str,
    *,
    finished: bool,
    released: Sequence[str],
    still_parked: Sequence[str],
) -> NextCall:
    """After set_schema: follow the migration (get_dataset), or a parked import that moved on, or upload a file."""
    if not finished:
        return call("get_dataset", dataset_id=dataset_id)
    if released:
        return call("get_import_status", dataset_id=dataset_id, import_id=released[0])
    return call("upload_file", ["path"], dataset_id=dataset_id)


def apply_schema(dataset_id: str, fields: list[dict[str, str]], strict: bool, *, destructive: bool) -> NextCall:
    """The set_schema call a dry run previewed (allow_destructive=true when the change needs it)."""
    if destructive:
        return call("set_schema", dataset_id=dataset_id, fields=fields, strict=strict, allow_destructive=True)
    return call("set_schema", dataset_id=dataset_id, fields=fields, strict=strict)


def after_create(dataset_id: str, *, schemaless: bool) -> NextCall:
    """What a new dataset needs next: a schema when it has none, else a file."""
    if schemaless:
        return call("set_schema", ["fields"], dataset_id=dataset_id, strict=False)
    return call("upload_file", ["path"], dataset_id=dataset_id)


def after_suggest(suggestion: SuggestedSchema) -> NextCall:
    """create_dataset with the suggested fields; the name is the agent's to choose."""
    return call("create_dataset", ["name"], fields=field_list(suggestion.fields), strict=suggestion.strict)
