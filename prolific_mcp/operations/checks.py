"""Checks that send nothing: validate_file (a file against a schema) and suggest_schema (fields from a file).

`key_findings` compares the file's keys with the schema's for validate_file and upload_file alike, so both give
the same answer, and `checked_preflight` is upload_file's verdict on a scanned file, whether the scan ran before
the PUT or beside it (docs/architecture.md, Files and pre-flight).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import anyio

from prolific_mcp.api.models import Dataset
from prolific_mcp.operations import render
from prolific_mcp.operations.deps import Deps, OperationError, checked_id, file_format, local_schema, parse_fields
from prolific_mcp.operations.results import KeyCheckInfo, PreflightInfo, SuggestSchemaResult, ValidateResult, field_list
from prolific_mcp.records import RecordRules, Schema
from prolific_mcp.records.keys import check_keys
from prolific_mcp.records.suggest import suggest_schema as suggest_from_file
from prolific_mcp.uploads.scan import ScanReport, scan_file


@dataclass(frozen=True, slots=True)
class KeyFindings:
    """What the key comparison found: a refusal (no key shared), or a warning, with its structured form."""

    refusal: str | None = None
    warning: str | None = None
    info: KeyCheckInfo | None = None


def key_findings(
    report: ScanReport,
    schema: Schema | None,
    *,
    name: str,
    path: str,
    dataset_id: str | None,
    datapoints: int | None,
) -> KeyFindings:
    """Compare the keys the file's records use with the schema's: no key shared is a refusal under any schema
    (every record would go in empty, or be rejected); schema keys in no record, or file keys outside the schema,
    are a warning with the likely renames and the calls that fix them."""
    if schema is None or schema.is_empty or not report.parsed or (report.failure is not None and not schema.strict):
        return KeyFindings()
    check = check_keys(schema.keys, report.file_keys, report.missing_keys)
    if not check.mismatch:
        return KeyFindings()
    text = render.key_check(check, name=name, path=path, schema=schema, dataset_id=dataset_id, datapoints=datapoints)
    info = render.key_check_info(check, text)
    if check.shares_none and report.failure is None:
        return KeyFindings(refusal=text, info=info)
    return KeyFindings(warning=text, info=info)


def checked_preflight(
    report: ScanReport, dataset: Dataset, display: str, path: str, nothing: str
) -> tuple[PreflightInfo, KeyFindings]:
    """The pre-flight's verdict on a scanned file: what it found, or OperationError when the file is certain to fail
    (`nothing` ends the refusal: what was, or was not, sent)."""
    schema = local_schema(dataset) if dataset.is_v4 else None
    preflight = PreflightInfo(
        sha256=report.sha256,
        size=report.size,
        record_count=report.record_count,
        expected_rejections=report.rejected,
        groups=render.group_infos(report.groups),
    )
    keys = key_findings(
        report, schema, name=display, path=path, dataset_id=dataset.id, datapoints=dataset.total_datapoint_count
    )
    if report.failure is not None:
        renames = f"\n{keys.warning}" if keys.warning else ""  # a strict key in no record: the likely renames
        raise OperationError(f"{display} cannot be imported: {report.failure}. {nothing}{renames}")
    if not dataset.is_v4:
        breaking = render.v3_breaking_rows(dataset.id, display, report.groups)
        if breaking is not None:
            raise OperationError(breaking)
    if keys.refusal is not None:
        raise OperationError(f"{keys.refusal}\n{nothing}")
    preflight.keys = keys.info
    return preflight, keys


async def validate_file(
    deps: Deps,
    path: str,
    dataset_id: str | None = None,
    fields: object = None,
    strict: bool = False,
    fmt: str | None = None,
) -> ValidateResult:
    if dataset_id is None and fields is None:
        raise OperationError(
            "pass dataset_id (to check against that dataset's schema) or fields and strict (to check against "
            "those), e.g. validate_file(path=..., dataset_id=...)"
        )
    if dataset_id is not None and fields is not None:
        raise OperationError(
            "pass dataset_id or fields, not both: drop fields to check against the dataset's own schema, or drop "
            "dataset_id to check against the fields you gave"
        )
    name = os.path.basename(path)
    with deps.open(path) as opened:  # first: a directory or a missing file is named as such, before any format
        chosen = file_format(path, fmt)
        datapoints: int | None = None
        if dataset_id is not None:
            dataset = await deps.client.get_dataset(checked_id(dataset_id, "dataset_id"))
            schema = local_schema(dataset) if dataset.is_v4 else None
            datapoints = dataset.total_datapoint_count
        else:
            schema = parse_fields(fields, strict)
        report = await anyio.to_thread.run_sync(
            lambda: scan_file(opened.fd, chosen, schema, rules=RecordRules(), expected_size=opened.size)
        )
    keys = key_findings(report, schema, name=name, path=path, dataset_id=dataset_id, datapoints=datapoints)
    failure = report.failure
    if keys.refusal is not None:
        failure = keys.refusal
        report.failure = keys.refusal.split("\n", 1)[0].rstrip(".")
    text = render.validated(
        name, report, report.groups, exact=deps.mode == "sandbox", keys=keys.refusal or keys.warning
    )
    if keys.refusal is not None:
        text = text.replace(f"It cannot be imported: {report.failure}.\n", "It cannot be imported:\n", 1)
    return ValidateResult(
        mode=deps.mode,
        ok=failure is None,
        failure=failure,
        format=chosen,
        record_count=report.record_count,
        expected_rejections=report.rejected,
        groups=render.group_infos(report.groups),
        keys=keys.info,
        sha256=report.sha256,
        size=report.size,
    ).with_text(text)


async def suggest_schema(deps: Deps, path: str, fmt: str | None = None) -> SuggestSchemaResult:
    name = os.path.basename(path)
    with deps.open(path) as opened:  # first: a directory or a missing file is named as such, before any format
        chosen = file_format(path, fmt)
        try:
            suggestion = await anyio.to_thread.run_sync(lambda: suggest_from_file(opened.fd, chosen))
        except ValueError as exc:
            raise OperationError(f"{name} cannot be read: {exc}") from None
    return SuggestSchemaResult(
        mode=deps.mode,
        fields=field_list(suggestion.fields),
        strict=suggestion.strict,
        sampled_records=suggestion.sampled,
        reasons=suggestion.reasons,
        notes=suggestion.notes,
    ).with_text(render.suggested(name, suggestion))
