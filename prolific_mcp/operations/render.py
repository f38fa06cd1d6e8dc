"""Every sentence an agent reads, in one place: import summaries, dataset views, schema changes, appends, checks,
next calls and progress messages.

Each function takes values (never a live job or a placeholder object) and returns text. Text taken from a file or
from Prolific is cleaned here (`one_line`); the MCP layer still passes all text through `for_agent` on the way out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from prolific_mcp.api.errors import (
    AmbiguousCreateError,
    AmbiguousSchemaUpdateError,
    AmbiguousUploadUrlError,
    NotFoundError,
    UnexpectedResponseError,
    UploadFailedError,
    UploadRejectedError,
    UploadUrlExpiredError,
)
from prolific_mcp.api.models import ImportJob, MigrationJob
from prolific_mcp.operations.results import DatasetResult, RejectionGroupInfo, WorkspaceInfo
from prolific_mcp.records import missing_key_from_reason
from prolific_mcp.records.rules import RAW_FIELD
from prolific_mcp.records.suggest import SuggestedSchema
from prolific_mcp.text import fence, number_ranges, one_line, plural, visible, visible_json
from prolific_mcp.uploads.files import ScanReport
from prolific_mcp.uploads.jobs import UploadJob
from prolific_mcp.uploads.rejections import MAX_RECORD_NUMBERS, MAX_TEXT, NOT_ITEMISED, RejectionGroup

# ----- rejected records --------------------------------------------------------------------------------------------


def suggest_fix(field_name: str | None, reason: str) -> str:
    """One plain fix for a cause of rejection."""
    lowered = reason.lower()
    missing = missing_key_from_reason(reason)
    if missing is not None:
        return f"give every record a value for '{missing}', or make the schema non-strict (set_schema, strict=false)"
    if reason == NOT_ITEMISED:
        return "Prolific did not list these records; compare the file with the records it did list to find them"
    if field_name == RAW_FIELD or "malformed json" in lowered or "not a json object" in lowered:
        return "make each line one complete JSON object (check quotes, commas and brackets)"
    for needle, fix in _FIXES:
        if needle in lowered:
            return fix
    return "correct the value as the reason says"


_FIXES: tuple[tuple[str, str], ...] = (
    ("exceeds maximum length", "shorten the text (or split the record in two)"),
    ("audio url", "link directly to a media file with one of the allowed extensions"),
    ("video url", "link directly to a media file with one of the allowed extensions"),
    ("url", "use absolute http(s) links with a host, such as https://cdn.example.com/file.png"),
    ("expected text", "write the value as a string (in quotes)"),
    ("task_group_id", "give each record a non-empty group id (a string or an integer)"),
    ("cells but the header", "quote cells that contain commas, or remove the extra cells"),
    ("utf-8", "save the file as UTF-8"),
    ("utf-16", "save the file as UTF-8"),
    ("json array", "write one JSON object per line (JSON Lines), without surrounding brackets"),
    ("pretty-printed", "write one JSON object per line (JSON Lines), without surrounding brackets"),
    ("header", "make the first line of the CSV the field keys, separated by commas"),
    ("delimiter", "export the CSV again with commas as separators"),
    ("empty", "check that the file has records in it"),
    ("no records", "check that the file has records in it"),
)
"""(a phrase of the reason, the fix), first match wins."""


def fix_of(group: RejectionGroup) -> str:
    return suggest_fix(group.field, group.reason)


def group_infos(groups: Sequence[RejectionGroup]) -> list[RejectionGroupInfo]:
    """The groups as the structured result shows them."""
    return [
        RejectionGroupInfo(
            field=g.key if g.field is None else g.field,
            reason=one_line(g.reason, 300),
            count=g.count,
            records=g.records,
            lines=g.lines,
            fix=fix_of(g),
        )
        for g in groups
    ]


def _group_lines(groups: Sequence[RejectionGroup], limit: int, *, counted: bool) -> list[str]:
    """'1. field: reason — N records, first 1, 2. Fix: ...' (or '— records 1, 2.' when not `counted`)."""
    lines = []
    for n, group in enumerate(groups[:limit], 1):
        numbers = ", ".join(str(r) for r in group.records[:10])
        where = f"{plural(group.count, 'record')}, first {numbers}" if counted else f"records {numbers}"
        lines.append(
            f"{n}. {one_line(group.key or 'record', 60)}: {one_line(group.reason, 160)} — {where}. "
            f"Fix: {fix_of(group)}."
        )
    return lines


# ----- imports -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ImportOutcome:
    """What an import summary says: the import's outcome and a few facts about the file."""

    dataset_id: str
    import_id: str | None
    filename: str
    status: str
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    record_count: int | None = None
    total_datapoints: int | None = None
    reason: str | None = None
    groups: list[RejectionGroup] = dataclasses.field(default_factory=list)
    rejected_file: str | None = None
    rejected_written: int | None = None
    batches: list[str] = dataclasses.field(default_factory=list)
    suggested_schema: dict[str, object] | None = None
    write_problem: str | None = None
    """Why the rejected-records file could not be written ('could not write the rejected-records file: ...')."""
    inline: bool = False
    """Records were itemised but the data came inline (content=...): no rejected-records file can be written."""


def import_summary(s: ImportOutcome) -> str:
    """Counts, causes with record numbers and fixes, excerpts, what it means, the next step; ≤ 2,000 characters."""
    head: list[str] = []
    name = one_line(s.filename, 60)
    ids = f"(dataset {s.dataset_id}" + (f", import {s.import_id})" if s.import_id else ")")
    if s.status in ("complete", "partial"):
        head += _accepted_lines(s, name, ids)
    elif s.status == "failed":
        head += _failed_lines(s, name, ids)
    elif s.status == "pending_schema":
        head.append(f"Parked: {name} {ids} is waiting in pending_schema because the dataset has no schema yet.")
        fields = visible_json(orjson.dumps(s.suggested_schema).decode()) if s.suggested_schema is not None else "..."
        call = f'set_schema(dataset_id="{s.dataset_id}", fields={fields}, strict=false)'
        if len(call) > 900:
            call = f'set_schema(dataset_id="{s.dataset_id}", fields=<suggest_schema\'s fields>, strict=false)'
        head.append(f"Next: set a schema, e.g. {call}; the parked import is then checked again.")
        return _bounded(head, [], [])
    else:
        head.append(f"Status {one_line(s.status, 30)}: {name} {ids}.")
    causes, excerpts = _causes(s.groups)
    text = _bounded(head, causes, excerpts, _tail(s))
    if s.status == "partial" and s.rejected_file is None and s.inline:
        text += "\nNo rejected-records file was written (the data came inline); the records are listed above."
    return text


def _accepted_lines(s: ImportOutcome, name: str, ids: str) -> list[str]:
    new = s.accepted - s.duplicates
    line = f"{s.status.capitalize()}: {name} {ids}: {plural(s.accepted, 'record')} accepted"
    if s.rejected:
        line += f", {plural(s.rejected, 'record')} rejected"
    if s.duplicates:
        line += f" ({s.duplicates:,} of the accepted were already in the dataset, so {new:,} are new)"
    lines = [line + "."]
    if s.total_datapoints is not None:
        lines.append(f"The dataset now has {plural(s.total_datapoints, 'datapoint')}.")
    if s.duplicates and new == 0 and s.accepted:
        lines.append("Every accepted record was a duplicate: nothing new was added.")
    return lines


def _failed_lines(s: ImportOutcome, name: str, ids: str) -> list[str]:
    lines = [f"Failed: {name} {ids}: nothing was imported."]
    if s.reason:
        lines.append(f"Reason given: {one_line(s.reason, 300)}")
    if s.rejected:
        lines.append(f"{plural(s.rejected, 'record')} were rejected.")
    if s.groups:
        lines.append("Likely fix: correct the records listed below, then upload the corrected file.")
    else:
        lines.append(f"Likely fix: {suggest_fix(None, s.reason or '')}; then upload the corrected file.")
    return lines


def _causes(groups: Sequence[RejectionGroup]) -> tuple[list[str], list[str]]:
    causes: list[str] = []
    excerpts: list[str] = []
    for n, group in enumerate(groups, 1):
        who = group.key or ("whole record" if group.field == RAW_FIELD else "record")
        numbers = number_ranges(group.records, MAX_RECORD_NUMBERS)
        where = (f": record {numbers}" if len(group.records) == 1 else f": records {numbers}") if numbers else ""
        if group.count > len(group.records) and numbers:
            where += f" and {group.count - len(group.records):,} more"
        if group.lines:
            where += f" (line{'s' if len(group.lines) > 1 else ''} {number_ranges(group.lines, 5)})"
        causes.append(
            f"{n}. {one_line(who, 60)}: {one_line(group.reason, 160)} — {plural(group.count, 'record')}{where}. "
            f"Fix: {fix_of(group)}."
        )
        if group.excerpt and group.records:
            excerpts.append(f"record {group.records[0]} ({one_line(who, 40)}): {group.excerpt}")
    return causes, excerpts


def _tail(s: ImportOutcome) -> list[str]:
    tail: list[str] = []
    if s.rejected_file is not None and s.rejected_written is not None:
        tail.append(f"{s.rejected_written:,} of {s.rejected:,} rejected records written to {s.rejected_file}.")
    elif s.write_problem is not None:
        tail.append(f"{s.write_problem[:1].upper()}{s.write_problem[1:]}; the rejected records are listed above.")
    if s.status == "partial":
        target = s.rejected_file or "a file with only the fixed records"
        tail.append(
            f"Next: fix the rejected records and upload {target} with upload_file to the same dataset: the accepted "
            "records stay and the fixed ones are added."
        )
        tail.append("Note: setting up a batch needs a dataset with at least one complete import.")
    if s.batches:
        shown = ", ".join(s.batches[:5])
        tail.append(f"Batches using this dataset: {shown}. New datapoints reach participants after a batch sync.")
    return tail


def _bounded(head: list[str], causes: list[str], excerpts: list[str], tail: list[str] | None = None) -> str:
    """Join the sections, dropping causes and excerpts from the end until the text fits in MAX_TEXT characters."""
    tail = tail or []
    shown_causes, shown_excerpts = list(causes), list(excerpts[:5])
    while True:
        parts = ["\n".join(head)]
        if shown_causes:
            more = len(causes) - len(shown_causes)
            block = ["Rejected, by cause:", *shown_causes]
            if more:
                block.append(f"… and {more} more cause{'s' if more > 1 else ''} (see the structured result).")
            parts.append("\n".join(block))
        if shown_excerpts:
            parts.append("Excerpts from your file:\n" + fence(shown_excerpts))
        if tail:
            parts.append("\n".join(tail))
        # Nothing invisible (control, format, bidi characters) reaches the agent, whatever the file or API held.
        text = visible("\n\n".join(parts))
        if len(text) <= MAX_TEXT:
            return text
        if shown_excerpts:
            shown_excerpts.pop()
        elif len(shown_causes) > 1:
            shown_causes.pop()
        else:
            return text[: MAX_TEXT - 1] + "…"


def v3_outcome(dataset_id: str, filename: str, record_count: int | None, ready: bool) -> str:
    if ready:
        return f"Dataset {dataset_id} is READY with {filename} ({plural(record_count or 0, 'row')})."
    return (
        f"Prolific could not process {filename}: the dataset status is ERROR. Check the CSV (a header row, UTF-8, "
        "one row per datapoint) and upload it again."
    )


def next_call(dataset_id: str, import_id: str | None, *, uploading: bool, wait: float) -> str:
    """The exact call that carries on where this one stopped, with the configured wait."""
    seconds = f"{wait:g}"
    if import_id and not uploading:
        return f'get_import_status(dataset_id="{dataset_id}", import_id="{import_id}", wait_seconds={seconds})'
    return (
        f'upload_file(dataset_id="{dataset_id}", path=<the same file>, wait_seconds={seconds}): the same file '
        "resumes this upload instead of starting another"
    )


def still_going(message: str, *, gave_up: bool, then: str) -> str:
    ahead = f" ({message})" if message else ""
    wait_line = (
        f"Still going after the wait{ahead}. The upload continues in the background."
        if not gave_up
        else "The import has not finished after the longest wait; it may still finish at Prolific."
    )
    return f"{wait_line}\nNext: {then}"


def with_orphans(text: str, orphans: Sequence[str]) -> str:
    if not orphans:
        return text
    return (
        text + f"\nLeft behind: {plural(len(orphans), 'unused import')} that never received a file "
        f"({', '.join(orphans[:5])}); they stay 'uninitialised' and are harmless."
    )


def stored_outcome(text: str, dataset_id: str, import_id: str | None, *, parked: bool) -> str:
    """The summary of an identical earlier upload, introduced as such."""
    if parked:
        prefix = (
            f"This file was uploaded before (import {import_id}) and is parked in pending_schema until the "
            f'dataset has a schema: call set_schema(dataset_id="{dataset_id}", ...) first.'
        )
    else:
        prefix = (
            f"This exact file was already imported into {dataset_id} (import {import_id}); here is the "
            "stored outcome. Pass force=true to upload it again (duplicates are counted, not written twice)."
        )
    return prefix + "\n\n" + text


def upload_ended(error: BaseException | None, filename: str, import_id: str | None, *, put_failed: bool) -> str:
    """Why an upload ended without an import outcome (an error, or a cancel when `error` is None)."""
    if error is None:
        return (
            f"the upload of {filename} was cancelled before Prolific received the whole file: nothing was "
            "imported; call upload_file again to start over"
        )
    if put_failed and import_id:
        never = f"import {import_id} never received the whole file: it stays 'uninitialised', which is harmless"
        return f"{error_text(error)} ({never})"
    return error_text(error)


def uploading_elsewhere(dataset_id: str, import_id: str | None) -> str:
    return (
        f"another server process is uploading this file to dataset {dataset_id} right now (import {import_id}): "
        f'follow it with get_import_status(dataset_id="{dataset_id}", import_id="{import_id}") instead of '
        "uploading it twice"
    )


# ----- errors ----------------------------------------------------------------------------------------------------


def error_text(exc: BaseException) -> str:
    """An error as an agent reads it: the fact it states, then which tool helps (the API layer names none)."""
    return f"{exc}{_advice(exc)}"


_NOT_FOUND_ADVICE: Final = {
    "dataset": ": check the id or call list_datasets",
    "import": " (get_dataset lists the dataset's imports)",
    "migration": ": check the migration_job_id that set_schema returned",
    "workspace": ": call list_workspaces for the valid ids",
}


def _advice(exc: BaseException) -> str:
    if isinstance(exc, NotFoundError):
        return _NOT_FOUND_ADVICE.get(exc.resource.kind, "")
    if isinstance(exc, AmbiguousCreateError):
        return " (get_dataset or list_datasets)"
    if isinstance(exc, AmbiguousSchemaUpdateError):
        return " (get_dataset shows it)"
    if isinstance(exc, AmbiguousUploadUrlError):
        seen = "; get_dataset lists the imports" if exc.orphan_import_ids is None else ""
        return f" (call upload_file again){seen}"
    if isinstance(exc, UploadFailedError) and exc.outcome_unknown:
        return f' (get_import_status(import_id="{exc.import_id}") shows it)'
    if isinstance(exc, UploadFailedError | UploadRejectedError | UploadUrlExpiredError):
        return " (call upload_file again)"
    if isinstance(exc, UnexpectedResponseError) and "schema_version" in str(exc):
        return " (get_dataset shows it)"
    return ""


# ----- progress --------------------------------------------------------------------------------------------------


def _mb(n: int) -> str:
    if n < 1_000_000:
        return f"{n / 1000:,.0f} KB"
    return f"{n / 1_000_000:,.1f} MB" if n < 10_000_000 else f"{n / 1_000_000:,.0f} MB"


def progress(job: UploadJob) -> tuple[float, str]:
    """(value 0–100, a message a person can read) for a job's current state (docs/architecture.md, Progress)."""
    name = job.plan.filename
    if job.phase == "waiting_for_slot":
        return 0.0, f"waiting for an upload slot ({job.slots_ahead} ahead)"
    if job.phase == "requesting_url":
        return 0.0, f"asking for an upload URL for {name}"
    if job.phase == "uploading":
        size = max(1, job.plan.size)
        return 50.0 * job.bytes_sent / size, f"uploading {name}: {_mb(job.bytes_sent)} of {_mb(job.plan.size)}"
    status = job.terminal_status
    if job.phase == "done" or status is not None:
        return 100.0, f"{(status or 'finished').lower()}: {name}"
    if job.plan.v3:
        return 50.0, f"Prolific is processing {name} (dataset status {job.v3_status or 'unknown'})"
    return import_progress(name, job.plan.record_count, job.latest)


def import_progress(name: str, record_count: int | None, latest: ImportJob | None) -> tuple[float, str]:
    """(value, message) while Prolific has the file: 50 until processing starts, then up to 99 with the records."""
    if latest is not None and latest.is_terminal:
        return 100.0, f"{latest.status.lower()}: {name}"
    if latest is None or latest.status == "uninitialised":
        return 50.0, f"uploaded {name}; waiting for Prolific to pick it up"
    if latest.status == "queued":
        return 50.0, "queued: waiting its turn (imports on one dataset run one at a time)"
    if latest.status == "processing":
        done = latest.processed_offset or 0
        if record_count:
            share = min(1.0, done / record_count)
            return 50.0 + 49.0 * share, f"processing: {done:,} of {record_count:,} records"
        return 50.0, f"processing: {done:,} records so far"
    return 50.0, f"import status: {latest.status}"


def migration_progress(migration: MigrationJob) -> str:
    done = f": {migration.reprocessed_count:,} datapoints so far" if migration.reprocessed_count else ""
    return f"schema migration {migration.status}{done}"


APPEND_WAITING = "waiting for a running import to finish"


# ----- workspaces and datasets -----------------------------------------------------------------------------------


def workspaces(infos: Sequence[WorkspaceInfo], default: str | None) -> str:
    lines = [f"{plural(len(infos), 'workspace')}:"]
    lines += [f"- {w.title or '(untitled)'} ({w.id})" + (" [default]" if w.id == default else "") for w in infos]
    if default is None and infos:
        lines.append("Pass workspace_id to create_dataset, or set PROLIFIC_WORKSPACE_ID to choose a default.")
    return "\n".join(lines)


def which_workspace(workspaces: Sequence[tuple[str, str | None]]) -> str:
    """Why create_dataset needs a workspace_id, listing the choices."""
    if not workspaces:
        return "this account has no workspace: create one in the Prolific app first"
    listed = "; ".join(f"{wid} ({one_line(title or '', 60)})" for wid, title in workspaces[:20])
    return (
        f"this account has {len(workspaces)} workspaces, so say which one: pass workspace_id (one of: {listed}) "
        "or set PROLIFIC_WORKSPACE_ID."
    )


def datasets(items: Sequence[tuple[str, str | None, str]]) -> str:
    """(id, name, source) of each known dataset."""
    if not items:
        return (
            "No datasets known yet. Prolific has no endpoint that lists datasets: this list holds the datasets "
            "created or used through this server and those attached to batches. Create one with create_dataset, "
            "or pass a dataset id you already have to get_dataset."
        )
    lines = [f"{plural(len(items), 'dataset')} known (Prolific has no list endpoint; see 'source'):"]
    lines += [f"- {name or '(unnamed)'} ({did}), {source}" for did, name, source in items[:50]]
    return "\n".join(lines)


def dataset_view(result: DatasetResult) -> str:
    """A readable view of a dataset: identity, counts, the schema as a table, the latest imports."""
    lines = [
        f"{result.name or '(unnamed)'} ({result.id}), V{result.version}, workspace {result.workspace_id or '?'}",
        f"Datapoints: {result.total_datapoint_count if result.total_datapoint_count is not None else 'unknown'}"
        + (f"; status {result.status}" if result.status else ""),
    ]
    if result.version == 4:
        if result.fields:
            lines.append(f"Schema (strict={str(result.strict).lower()}):")
            lines.append("| field | type | label |")
            lines.append("|---|---|---|")
            lines += [f"| {f.key} | {f.type} | {one_line(f.label or '', 60)} |" for f in result.fields]
        else:
            lines.append("Schema: none yet (uploads wait in pending_schema until set_schema).")
        if result.imports:
            lines.append("Latest imports:")
            for imp in result.imports[:5]:
                counts = ""
                if imp.accepted_count is not None:
                    counts = f": {imp.accepted_count:,} accepted"
                    if imp.rejected_count:
                        counts += f", {imp.rejected_count:,} rejected"
                lines.append(f"- {imp.import_id} {imp.status} {imp.filename or ''}{counts}")
    if result.batches:
        lines.append("Batches: " + ", ".join(result.batches))
    return "\n".join(lines)


def created(result: DatasetResult, *, v3: bool, schemaless: bool) -> str:
    if v3:
        step = f'Next: upload_file(dataset_id="{result.id}", path="<your .csv>"): V3 takes CSV files.'
    elif schemaless:
        step = (
            f'Next: set_schema(dataset_id="{result.id}", fields=..., strict=false) (suggest_schema helps); an '
            "upload before that waits in pending_schema."
        )
    else:
        step = f'Next: upload_file(dataset_id="{result.id}", path="<your .jsonl or .csv>").'
    return f"Created dataset {result.name!r} ({result.id}).\n{dataset_view(result)}\n\n{step}"


# ----- schemas ---------------------------------------------------------------------------------------------------


def migration(dataset_id: str, job: MigrationJob) -> str:
    """One or two sentences on a schema migration's state."""
    if job.status == "complete":
        return f"Migration {job.job_id} complete: {job.reprocessed_count or 0:,} datapoints re-checked."
    if job.status == "partial":
        return (
            f"Migration {job.job_id} partial: {job.reprocessed_count or 0:,} re-checked, "
            f"{job.failed_count or 0:,} values could not be converted and were set to null. Check those fields "
            "before setting up a batch."
        )
    if job.status == "failed":
        return (
            f"Migration {job.job_id} failed: {one_line(job.reason or 'no reason given', 300)}. The schema "
            "version changed but the datapoints were not re-checked; try set_schema again or contact Prolific."
        )
    return (
        f'Migration {job.job_id} is still {job.status}. Next: get_dataset(dataset_id="{dataset_id}") '
        "later to see the schema in force."
    )


def parked_imports(dataset_id: str, released: Sequence[str], still: Sequence[str]) -> list[str]:
    lines = []
    if released:
        lines.append(
            f"{plural(len(released), 'parked import')} moved on: follow with "
            + ", ".join(f'get_import_status(dataset_id="{dataset_id}", import_id="{i}")' for i in released[:3])
        )
    if still:
        lines.append(
            f"{plural(len(still), 'parked import')} did not move on ({', '.join(still[:5])}): upload those "
            "files again with upload_file."
        )
    return lines


# ----- append, validate, suggest ---------------------------------------------------------------------------------


def appended(
    dataset_id: str,
    accepted: int,
    rejected: int,
    duplicates: int,
    groups: Sequence[RejectionGroup],
    *,
    retried: bool,
) -> str:
    lines = [
        f"Appended to {dataset_id}: {plural(accepted, 'record')} accepted ({duplicates:,} already there), "
        f"{rejected:,} rejected."
    ]
    lines += _group_lines(groups, 10, counted=False)
    if retried:
        lines.append("(The request was sent more than once after a network error; appends are idempotent.)")
    if accepted - duplicates > 0:
        lines.append("New datapoints reach a running batch after a batch sync.")
    return "\n".join(lines)


def append_still_blocked(dataset_id: str) -> str:
    return (
        f"an import or schema migration is still running on {dataset_id}, and appends wait for it: "
        "call append_records again in a minute (get_dataset shows the imports)"
    )


def validated(name: str, report: ScanReport, groups: Sequence[RejectionGroup], *, exact: bool) -> str:
    verdict = f"{name}: {plural(report.record_count, 'record')}, " + (
        f"{report.rejected:,} would be rejected"
        if exact
        else f"{report.rejected:,} likely to be rejected (our local rules approximate Prolific's)"
    )
    lines = [verdict + "." if report.failure is None else f"{verdict}. It cannot be imported: {report.failure}."]
    lines += _group_lines(groups, 15, counted=True)
    if report.failure is None and not report.rejected:
        lines.append("No problems found: upload it with upload_file.")
    return "\n".join(lines)


def suggested(name: str, suggestion: SuggestedSchema) -> str:
    lines = [f"Suggested schema from {plural(suggestion.sampled, 'record')} of {name}:"]
    for key, spec in suggestion.fields.items():
        lines.append(f"- {key}: {spec['type']} ({suggestion.reasons.get(key, '')})")
    lines += [f"Note: {n}" for n in suggestion.notes]
    lines.append(
        "Next: create_dataset(name=..., fields=<these fields>, strict=false), or set_schema on an existing "
        "dataset; adjust types first if one is wrong."
    )
    return "\n".join(lines)
