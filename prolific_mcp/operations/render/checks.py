"""validate_file and suggest_schema: the verdict, the file's keys against the schema's (with the calls that fix
them), and a suggested schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from prolific_mcp.operations.render.calls import after_suggest, call_text
from prolific_mcp.operations.render.groups import bounded
from prolific_mcp.operations.results import KeyCheckInfo
from prolific_mcp.records import Schema
from prolific_mcp.records.keys import KeyCheck
from prolific_mcp.records.suggest import SuggestedSchema
from prolific_mcp.text import one_line, plural, visible_json
from prolific_mcp.uploads.groups import MAX_GROUPS, RejectionGroup
from prolific_mcp.uploads.scan import ScanReport


def _keys(keys: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(one_line(k, 40) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _renamed_fields(schema: Schema, renames: Sequence[tuple[str, str]]) -> str:
    """The schema's fields as set_schema takes them (a list of {key, type, label}), each likely-renamed schema key
    replaced by the file's key."""
    to_file = {k: f for f, k in renames}
    fields: list[dict[str, str]] = []
    for spec in schema.fields:
        body = {"key": to_file.get(spec.key, spec.key), "type": spec.type}
        if spec.label:
            body["label"] = spec.label
        fields.append(body)
    return visible_json(orjson.dumps(fields).decode())


def key_check(
    check: KeyCheck,
    *,
    name: str,
    path: str,
    schema: Schema,
    dataset_id: str | None,
    datapoints: int | None,
) -> str:
    """Why the file's keys and the schema's differ, the likely renames, and the exact calls that fix it."""
    lines: list[str] = []
    if check.shares_none:
        lines.append(
            f"{one_line(name, 60)} shares no key with the schema (schema: {_keys(check.schema_keys)}; file: "
            f"{_keys(check.file_keys)}): every record would go in as an empty datapoint."
        )
    else:
        lines.append("Warning: the file's keys and the schema's differ, so data would go in without a column.")
        if check.missing:
            lines.append(f"Schema keys in no record of the file: {_keys(check.missing)}.")
        if check.unknown:
            lines.append(f"File keys not in the schema (their values would be dropped): {_keys(check.unknown)}.")
    if check.renames:
        pairs = ", ".join(f"{one_line(f, 40)} → {one_line(k, 40)}" for f, k in check.renames[:10])
        lines.append(f"Likely renames (file key → schema key): {pairs}.")
        fixes = [
            "rename "
            + ", ".join(f"{one_line(f, 40)} to {one_line(k, 40)}" for f, k in check.renames[:10])
            + " in the file (the key in each record, or the CSV's header)"
        ]
    else:
        fixes = ["rename the file's keys to the schema's (the key in each record, or the CSV's header)"]
    strict = str(schema.strict).lower()
    renamed = _renamed_fields(schema, check.renames)
    if dataset_id is not None and check.renames:
        consent = ", allow_destructive=true" if datapoints else ""
        call = f'set_schema(dataset_id="{dataset_id}", fields={renamed}, strict={strict}{consent})'
        if len(call) > 700:
            call = (
                f'set_schema(dataset_id="{dataset_id}", fields=<the fields with the renames>, strict={strict}{consent})'
            )
        if datapoints:
            call += (
                f" (the dataset has {plural(datapoints, 'datapoint')}: a renamed schema field loses the values it "
                "holds, so renaming in the file is safer)"
            )
        fixes.append(f"change the schema to the file's keys: {call}")
    elif dataset_id is None and check.renames:
        call = f'validate_file(path="{one_line(path, 200)}", fields={renamed}, strict={strict})'
        if len(call) > 700:
            call = "validate_file again with the fields renamed"
        fixes.append(f"use the file's keys in your fields: {call}")
    leftover = [k for k in check.unknown if k not in {f for f, _ in check.renames}]
    if leftover and dataset_id is not None:
        fixes.append(
            f"to keep {_keys(leftover, 5)}, add {'them' if len(leftover) > 1 else 'it'} to the schema with "
            f'set_schema (suggest_schema(path="{one_line(path, 200)}") proposes the types)'
        )
    lines.append("Fix: " + "; or ".join(fixes) + ".")
    return "\n".join(lines)


def key_check_info(check: KeyCheck, warning: str) -> KeyCheckInfo:
    return KeyCheckInfo(
        missing_keys=check.missing[:MAX_GROUPS],
        unknown_keys=check.unknown[:MAX_GROUPS],
        likely_renames=dict(check.renames[:MAX_GROUPS]),
        warning=warning,
    )


def validated(
    name: str, report: ScanReport, groups: Sequence[RejectionGroup], *, exact: bool, keys: str | None = None
) -> str:
    """validate_file's answer: the verdict, the key warning (or refusal), the causes; 'No problems found' only
    when nothing at all was found."""
    verdict = f"{one_line(name, 60)}: {plural(report.record_count, 'record')}, " + (
        f"{report.rejected:,} would be rejected"
        if exact
        else f"{report.rejected:,} likely to be rejected (our local rules approximate Prolific's)"
    )
    head = [verdict + "." if report.failure is None else f"{verdict}. It cannot be imported: {report.failure}."]
    if keys is not None:
        head.append(keys)
    tail = []
    if report.failure is None and not report.rejected and keys is None:
        tail.append("No problems found: upload it with upload_file.")
    elif report.failure is None and keys is None:
        tail.append("Next: fix the records listed (or upload anyway: the others are imported).")
    return bounded(head, groups, tail, excerpts=False)


def suggested(name: str, suggestion: SuggestedSchema) -> str:
    lines = [f"Suggested schema from {plural(suggestion.sampled, 'record')} of {one_line(name, 120)}:"]
    for key, spec in suggestion.fields.items():
        lines.append(f"- {one_line(key, 80)}: {spec['type']} ({one_line(suggestion.reasons.get(key, ''), 200)})")
    lines += [f"Note: {one_line(n, 300)}" for n in suggestion.notes]
    lines.append(
        f"Next: {call_text(after_suggest(suggestion))}, or set_schema on an existing dataset with these fields; "
        "adjust types first if one is wrong."
    )
    return "\n".join(lines)
