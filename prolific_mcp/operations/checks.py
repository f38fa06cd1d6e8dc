"""Checks that send nothing: validate_file (a file against a schema) and suggest_schema (fields from a file)."""

from __future__ import annotations

import os

import anyio

from prolific_mcp.operations import render
from prolific_mcp.operations.deps import Deps, OperationError, checked_id, file_format, local_schema, parse_fields
from prolific_mcp.operations.results import SuggestSchemaResult, ValidateResult
from prolific_mcp.records import RecordRules
from prolific_mcp.records.suggest import suggest_schema as suggest_from_file
from prolific_mcp.uploads.files import scan_file


async def validate_file(
    deps: Deps,
    path: str,
    dataset_id: str | None = None,
    fields: object = None,
    strict: bool = False,
    fmt: str | None = None,
) -> ValidateResult:
    if dataset_id is None and fields is None:
        raise OperationError("pass dataset_id (to check against its schema) or fields and strict")
    resolved = deps.resolve(path)
    chosen = file_format(path, fmt)
    with deps.open(resolved) as opened:
        if dataset_id is not None:
            dataset = await deps.client.get_dataset(checked_id(dataset_id, "dataset_id"))
            schema = local_schema(dataset) if dataset.is_v4 else None
        else:
            schema = parse_fields(fields, strict)
        report = await anyio.to_thread.run_sync(
            lambda: scan_file(opened.fd, chosen, schema, rules=RecordRules(), expected_size=opened.size)
        )
    text = render.validated(os.path.basename(path), report, report.groups, exact=deps.mode == "sandbox")
    return ValidateResult(
        mode=deps.mode,
        ok=report.failure is None,
        failure=report.failure,
        format=chosen,
        record_count=report.record_count,
        expected_rejections=report.rejected,
        groups=render.group_infos(report.groups),
        sha256=report.sha256,
        size=report.size,
    ).with_text(text)


async def suggest_schema(deps: Deps, path: str, fmt: str | None = None) -> SuggestSchemaResult:
    resolved = deps.resolve(path)
    chosen = file_format(path, fmt)
    name = os.path.basename(path)
    with deps.open(resolved) as opened:
        try:
            suggestion = await anyio.to_thread.run_sync(lambda: suggest_from_file(opened.fd, chosen))
        except ValueError as exc:
            raise OperationError(f"{name} cannot be read: {exc}") from None
    return SuggestSchemaResult(
        mode=deps.mode,
        fields=suggestion.fields,
        strict=suggestion.strict,
        sampled_records=suggestion.sampled,
        reasons=suggestion.reasons,
        notes=suggestion.notes,
    ).with_text(render.suggested(name, suggestion))
