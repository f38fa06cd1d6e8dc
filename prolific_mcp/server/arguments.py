"""Tool arguments: checked against the published input schema before anything runs (`CheckedTool`).

An unknown argument is refused, naming the valid ones and the one meant by a near miss, and every argument error names
the argument, the shape expected and an example, never a validation-library dump (docs/architecture.md, Rules an
agent can rely on). The published schemas are plain (no `$ref`) and closed, and wait_seconds carries its bounds.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import Field, ValidationError

from prolific_mcp.operations.deps import FIELDS_EXAMPLE
from prolific_mcp.operations.results import field_list
from prolific_mcp.server.outputs import safe_text
from prolific_mcp.text import one_line

if TYPE_CHECKING:
    from mcp.server.context import LifespanContextT, RequestT

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


def clamp_wait(wait_seconds: float, max_wait: float) -> tuple[float, list[str]]:
    """wait_seconds within 0..max_wait, and what was said about it when it was not."""
    if wait_seconds > max_wait:
        said = f"wait_seconds={wait_seconds:g} is over the maximum of {max_wait:g}, so this call waited at most "
        said += f"{max_wait:g} s."
        return max_wait, [said]
    if wait_seconds < 0:
        return 0.0, [f"wait_seconds={wait_seconds:g} is below 0, so 0 was used (an answer at once)."]
    return wait_seconds, []
