"""Every sentence an agent reads, in one place: import summaries, dataset views, schema changes, appends, checks,
next calls and progress messages.

Each function takes values (never a live job or a placeholder object) and returns text. Text taken from a file or
from Prolific is cleaned here (`one_line`); the MCP layer still passes all text through `for_agent` on the way out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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
from prolific_mcp.operations.results import (
    DatasetResult,
    FileExcerpt,
    KeyCheckInfo,
    NextCall,
    RejectionGroupInfo,
    WorkspaceInfo,
    field_list,
)
from prolific_mcp.records import Schema, missing_key_from_reason
from prolific_mcp.records.keys import KeyCheck
from prolific_mcp.records.rules import RAW_FIELD
from prolific_mcp.records.suggest import SuggestedSchema
from prolific_mcp.text import fence, number_ranges, one_line, plural, visible, visible_json
from prolific_mcp.uploads.files import ScanReport
from prolific_mcp.uploads.jobs import UploadJob
from prolific_mcp.uploads.rejections import (
    MAX_EXCERPTS,
    MAX_GROUPS,
    MAX_GROUPS_SHOWN,
    MAX_RECORD_NUMBERS,
    MAX_TEXT,
    NOT_ITEMISED,
    OTHER,
    RejectionGroup,
)

# ----- rejected records --------------------------------------------------------------------------------------------


def suggest_fix(field_name: str | None, reason: str) -> str:
    """One plain fix for a cause of rejection."""
    lowered = reason.lower()
    missing = missing_key_from_reason(reason)
    if missing is not None:
        return f"give every record a value for '{missing}', or make the schema non-strict (set_schema, strict=false)"
    if reason == NOT_ITEMISED:
        return "Prolific did not list these records; compare the file with the records it did list to find them"
    if reason == OTHER:
        return "see each cause's fix in the structured result"
    for needle, fix in _ROW_FIXES:
        if needle in lowered:
            return fix
    if field_name == RAW_FIELD or "malformed json" in lowered or "not a json object" in lowered:
        return "make each line one complete JSON object (check quotes, commas and brackets)"
    for needle, fix in _FIXES:
        if needle in lowered:
            return fix
    return "correct the value as the reason says"


_ROW_FIXES: tuple[tuple[str, str], ...] = (
    (
        "cells but the header",
        "give the row exactly as many cells as the header has columns (quote cells that contain commas)",
    ),
    ("row is not valid csv", "check the row's quotes: a cell with a comma, quote or line break goes in double quotes"),
    ("not valid utf-8", "save the file as UTF-8"),
    ("this server reads of one", "split or shorten the record"),
)
"""Fixes for problems of a CSV row or an over-long line, checked before the JSON Lines fix."""

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


def cause_line(n: int, group: RejectionGroup) -> str:
    """One group as every tool words it: 'n. field: reason — K records: records 1-3 and 5 more (lines 2-4). Fix: …'."""
    if group.reason == NOT_ITEMISED:
        return f"{n}. {NOT_ITEMISED}: {plural(group.count, 'record')}. Fix: {fix_of(group)}."
    if group.reason == OTHER:
        who = "other causes"
        reason = "several different problems (each cause's first records are in the structured result)"
    else:
        who = group.key or ("whole record" if group.field == RAW_FIELD else "record")
        reason = group.reason
    numbers = number_ranges(group.records, MAX_RECORD_NUMBERS)
    where = (f": record {numbers}" if len(group.records) == 1 else f": records {numbers}") if numbers else ""
    if group.count > len(group.records) and numbers:
        where += f" and {group.count - len(group.records):,} more"
    if group.lines:
        where += f" (line{'s' if len(group.lines) > 1 else ''} {number_ranges(group.lines, 5)})"
    return (
        f"{n}. {one_line(who, 60)}: {one_line(reason, 160)} — {plural(group.count, 'record')}{where}. "
        f"Fix: {fix_of(group)}."
    )


def _excerpts(groups: Sequence[RejectionGroup]) -> list[str]:
    out = []
    for group in groups:
        if group.excerpt and group.records:
            who = group.key or ("whole record" if group.field == RAW_FIELD else "record")
            out.append(f"record {group.records[0]} ({one_line(who, 40)}): {group.excerpt}")
    return out


def _cause_block(groups: Sequence[RejectionGroup], shown: int) -> str:
    """The first `shown` groups (NOT_ITEMISED always, last), then '… and N more causes (M records)' for the rest:
    the counts written out add up to every rejected record."""
    pinned = [g for g in groups if g.reason == NOT_ITEMISED]
    others = [g for g in groups if g.reason != NOT_ITEMISED]
    listed, hidden = others[:shown], others[shown:]
    lines = ["Rejected, by cause:"]
    lines += [cause_line(n, g) for n, g in enumerate([*listed, *pinned], 1)]
    if hidden:
        count = sum(g.count for g in hidden)
        lines.append(
            f"… and {plural(len(hidden), 'more cause')} ({plural(count, 'record')}; every group is in the "
            "structured result)."
        )
    return "\n".join(lines)


def bounded(
    head: Sequence[str],
    groups: Sequence[RejectionGroup],
    tail: Sequence[str] = (),
    *,
    excerpts: bool = True,
) -> str:
    """Head, the causes, excerpts and tail in at most MAX_TEXT characters: excerpts go first, then causes from the
    end (into the '… and N more' line); the NOT_ITEMISED group and the counts are never dropped."""
    quoted = _excerpts(groups)[:MAX_EXCERPTS] if excerpts else []
    shown = min(MAX_GROUPS_SHOWN, sum(g.reason != NOT_ITEMISED for g in groups))
    while True:
        parts = ["\n".join(head)] if head else []
        if groups:
            parts.append(_cause_block(groups, shown))
        if quoted:
            parts.append("Excerpts from your file:\n" + fence(quoted))
        if tail:
            parts.append("\n".join(tail))
        # Nothing invisible (control, format, bidi characters) reaches the agent, whatever the file or API held.
        text = visible("\n\n".join(parts))
        if len(text) <= MAX_TEXT:
            return text
        if quoted:
            quoted.pop()
        elif shown > 0:
            shown -= 1
        else:
            return text[: MAX_TEXT - 1] + "…"


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
    next_call: NextCall | None = None
    """The call the summary's 'Next:' line names (the same as the structured result's)."""
    key_warning: str | None = None
    """The pre-flight's warning that the file's keys and the schema's differ (said with every outcome)."""


def import_summary(s: ImportOutcome) -> str:
    """Counts, causes with record numbers and fixes, excerpts, what it means, the next step; ≤ 2,000 characters."""
    head: list[str] = []
    name = one_line(s.filename, 60)
    ids = f"(dataset {s.dataset_id}" + (f", import {s.import_id})" if s.import_id else ")")
    if s.status in ("complete", "partial"):
        head += _accepted_lines(s, name, ids)
        if s.key_warning:
            head.append(s.key_warning)
    elif s.status == "failed":
        head += _failed_lines(s, name, ids)
    elif s.status == "pending_schema":
        head.append(f"Parked: {name} {ids} is waiting in pending_schema because the dataset has no schema yet.")
        step = call_text(s.next_call) if s.next_call is not None else f'set_schema(dataset_id="{s.dataset_id}", ...)'
        head.append(f"Next: set a schema, e.g. {step}; the parked import is then checked again.")
        return bounded(head, [])
    else:
        head.append(f"Status {one_line(s.status, 30)}: {name} {ids}.")
    tail = _tail(s)
    if s.status == "partial" and s.rejected_file is None and s.inline:
        tail.append("No rejected-records file was written (the data came inline); the records are listed above.")
    return bounded(head, s.groups, tail)


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
    if s.next_call is not None:
        lines.append(f"Next: once the file is corrected, {call_text(s.next_call)}.")
    return lines


def _tail(s: ImportOutcome) -> list[str]:
    tail: list[str] = []
    if s.rejected_file is not None and s.rejected_written is not None:
        tail.append(f"{s.rejected_written:,} of {s.rejected:,} rejected records written to {s.rejected_file}.")
    elif s.write_problem is not None:
        tail.append(f"{s.write_problem[:1].upper()}{s.write_problem[1:]}; the rejected records are listed above.")
    if s.status == "partial":
        target = s.rejected_file or "a file with only the fixed records"
        step = call_text(s.next_call) if s.next_call is not None else "upload_file to the same dataset"
        tail.append(
            f"Next: fix the rejected records in {target}, then call {step}: the accepted records stay and the fixed "
            "ones are added."
        )
        tail.append("Note: setting up a batch needs a dataset with at least one complete import.")
    if s.batches:
        shown = ", ".join(s.batches[:5])
        tail.append(f"Batches using this dataset: {shown}. New datapoints reach participants after a batch sync.")
    return tail


def v3_breaking_rows(dataset_id: str, name: str, groups: Sequence[RejectionGroup]) -> str | None:
    """Why a CSV must not go to a V3 dataset (a row Prolific cannot read turns the whole dataset to ERROR), naming
    the rows; None when every row could be read."""
    bad = [g for g in groups if g.field == RAW_FIELD]
    if not bad:
        return None
    count = sum(g.count for g in bad)
    first = bad[0]
    where = f"row {first.records[0]}" if first.records else "a row"
    if first.lines:
        where += f" (line {first.lines[0]})"
    more = ""
    if count > 1:
        rows = sorted(r for g in bad for r in g.records)
        more = f" {plural(count, 'row')} in all cannot be read: rows {number_ranges(rows, MAX_RECORD_NUMBERS)}."
    return (
        f"{one_line(name, 60)} cannot go to the legacy V3 dataset {dataset_id}: {where} cannot be read "
        f"({one_line(first.reason, 160)}), and one such row turns a V3 dataset's status to ERROR.{more} "
        f"Fix: {fix_of(first)}, then upload the file again. Nothing was uploaded."
    )


def v3_outcome(dataset_id: str, filename: str, record_count: int | None, ready: bool) -> str:
    if ready:
        return f"Dataset {dataset_id} is READY with {filename} ({plural(record_count or 0, 'row')})."
    return (
        f"Prolific could not process {filename}: the dataset status is ERROR. Check the CSV (a header row, UTF-8, "
        "one row per datapoint) and upload it again."
    )


# ----- next calls (docs/architecture.md, Rules an agent can rely on) ---------------------------------------------

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


def file_excerpts(groups: Sequence[RejectionGroup]) -> list[FileExcerpt]:
    """The quoted values of the groups, for the structured result's untrusted_file_excerpts."""
    return [
        FileExcerpt(record=g.records[0], field=g.key, text=one_line(g.excerpt, MAX_EXCERPT_TEXT))
        for g in groups
        if g.excerpt and g.records
    ]


MAX_EXCERPT_TEXT: Final = 200


def still_going(message: str, *, gave_up: bool, then: NextCall | str | None) -> str:
    ahead = f" ({message})" if message else ""
    wait_line = (
        f"Still going after the wait{ahead}. The upload continues in the background."
        if not gave_up
        else "The import has not finished after the longest wait; it may still finish at Prolific."
    )
    if then is None:
        return wait_line
    step = then if isinstance(then, str) else call_text(then)
    if isinstance(then, NextCall) and then.tool == "upload_file":
        step += ": the same file resumes this upload instead of starting another"
    return f"{wait_line}\nNext: {step}"


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
    if not import_id:
        return (
            f"another call or server process is starting the upload of this file to dataset {dataset_id} right "
            "now: call upload_file again with the same arguments in a minute to follow it (it is not uploaded twice)"
        )
    return (
        f"another server process is uploading this file to dataset {dataset_id} right now (import "
        f'{import_id}): follow it with get_import_status(dataset_id="{dataset_id}", import_id="{import_id}") '
        "instead of uploading it twice"
    )


def upload_unchecked(error: BaseException, dataset_id: str, import_id: str, wait: float) -> str:
    """An upload that failed where the file may still have reached its import (never called harmless)."""
    return (
        f"{error_text(error)}. Import {import_id} may have received the file all the same (its status could not "
        f'be read): follow it with get_import_status(dataset_id="{dataset_id}", import_id="{import_id}", '
        f"wait_seconds={wait:g}); upload_file with the same file checks it again before uploading a second time"
    )


# ----- errors ----------------------------------------------------------------------------------------------------


def unexpected_failure(tool: str, exc: BaseException) -> str:
    """An exception no operation expected, as an agent reads it: which tool, what is known, what to do next."""
    what = one_line(f"{type(exc).__name__}: {exc}", 300)
    step = (
        "call upload_file again with the same arguments: an upload already under way is followed, never made twice"
        if tool == "upload_file"
        else f"call {tool} again"
    )
    return (
        f"{tool} failed unexpectedly inside the server ({what}). Next: {step}; if it fails the same way, run "
        "`prolific-datasets-mcp doctor` and report the error with the server's log (stderr)"
    )


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
        return (
            ". Its id never arrived, so get_dataset cannot look it up, and list_datasets only lists it once a batch "
            "uses it: look for a dataset of that name created at that time in Prolific's app (AI Task Builder, the "
            "workspace's datasets) or, after a while, in list_datasets; create it again only if it is not there"
        )
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
    """(value 0–100, a message a person can read) for a job's current state (docs/architecture.md, Progress).

    Only what is true: a place in the queue only while the job waits in it, 100 only at a terminal status (an
    upload that ended with an error or a cancel says it stopped, at a value that does not rise)."""
    name = job.plan.filename
    if job.error is not None or job.cancelled:
        return 0.0, f"stopped: the upload of {name} did not finish"
    if job.phase == "waiting_for_slot":
        if not job.queued_for_slot:
            return 0.0, f"starting the upload of {name}"
        ahead = "next in line" if job.slots_ahead == 0 else f"{job.slots_ahead} ahead"
        return 0.0, f"waiting for an upload slot ({ahead}): every slot is busy with another upload"
    if job.phase == "requesting_url":
        return 0.0, f"asking for an upload URL for {name}"
    if job.phase == "uploading":
        size = max(1, job.plan.size)
        return 50.0 * job.bytes_sent / size, f"uploading {name}: {_mb(job.bytes_sent)} of {_mb(job.plan.size)}"
    status = job.terminal_status
    if status is not None:
        return 100.0, f"{status.lower()}: {name}"
    if job.phase == "done":
        return 0.0, f"stopped: {name} is no longer followed"
    if job.plan.v3:
        rows = f"{plural(job.plan.record_count, 'row')}, " if job.plan.record_count else ""
        return 51.0, f"Prolific is processing {name} ({rows}dataset status {job.v3_status or 'not known yet'})"
    return import_progress(name, job.plan.record_count, job.latest)


def import_progress(name: str, record_count: int | None, latest: ImportJob | None) -> tuple[float, str]:
    """(value, message) while Prolific has the file: 50 uploaded, 51 queued, then 52–99 by the records processed
    (against the pre-flight's count when known), 100 at a terminal status."""
    if latest is not None and latest.is_terminal:
        return 100.0, f"{latest.status.lower()}: {name}"
    if latest is None or latest.status == "uninitialised":
        return 50.0, f"uploaded {name}; waiting for Prolific to pick it up"
    if latest.status == "queued":
        return 51.0, f"queued at Prolific: processing of {name} has not started yet"
    if latest.status == "processing":
        done = latest.processed_offset or 0
        if record_count:
            share = min(1.0, done / record_count)
            return 52.0 + 47.0 * share, f"processing {name}: {done:,} of {record_count:,} records"
        return 52.0, f"processing {name}: {done:,} records so far"
    return 51.0, f"import status: {one_line(latest.status, 30)}"


def migration_progress(migration: MigrationJob, datapoints: int | None = None) -> tuple[float, str]:
    """(value, message) of a schema migration: by the datapoints re-checked against the dataset's count when
    known, 100 at a terminal status."""
    done = migration.reprocessed_count or 0
    if migration.is_terminal:
        return 100.0, f"schema migration {one_line(migration.status, 30)}: {done:,} datapoints re-checked"
    if datapoints:
        share = min(1.0, done / datapoints)
        return 1.0 + 98.0 * share, f"schema migration: {done:,} of {datapoints:,} datapoints re-checked"
    return 1.0, f"schema migration {one_line(migration.status, 30)}: {done:,} datapoints re-checked so far"


APPEND_WAITING = "waiting for a running import or schema migration on the dataset to finish"


# ----- workspaces and datasets -----------------------------------------------------------------------------------


def workspaces(infos: Sequence[WorkspaceInfo], default: str | None) -> str:
    lines = [f"{plural(len(infos), 'workspace')}:"]
    lines += [
        f"- {one_line(w.title or '', 120) or '(untitled)'} ({w.id})" + (" [default]" if w.id == default else "")
        for w in infos
    ]
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
    lines += [f"- {one_line(name or '', 120) or '(unnamed)'} ({did}), {source}" for did, name, source in items[:50]]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Untrusted text as one cell of a markdown table: one line, and no '|' to split the row."""
    return one_line(text, 60).replace("|", "/")


def dataset_view(result: DatasetResult) -> str:
    """A readable view of a dataset: identity, counts, the schema as a table, the latest imports."""
    lines = [
        f"{one_line(result.name or '', 120) or '(unnamed)'} ({result.id}), V{result.version}, "
        f"workspace {result.workspace_id or '?'}",
        f"Datapoints: {result.total_datapoint_count if result.total_datapoint_count is not None else 'unknown'}"
        + (f"; status {result.status}" if result.status else ""),
    ]
    if result.version == 4:
        if result.fields:
            lines.append(f"Schema (strict={str(result.strict).lower()}):")
            lines.append("| field | type | label |")
            lines.append("|---|---|---|")
            lines += [f"| {_cell(f.key)} | {_cell(f.type)} | {_cell(f.label or '')} |" for f in result.fields]
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
                lines.append(f"- {imp.import_id} {one_line(imp.status, 30)} {one_line(imp.filename or '', 60)}{counts}")
    if result.batches:
        lines.append("Batches: " + ", ".join(result.batches))
    return "\n".join(lines)


def after_create(dataset_id: str, *, schemaless: bool) -> NextCall:
    """What a new dataset needs next: a schema when it has none, else a file."""
    if schemaless:
        return call("set_schema", ["fields"], dataset_id=dataset_id, strict=False)
    return call("upload_file", ["path"], dataset_id=dataset_id)


def created(result: DatasetResult, *, v3: bool, schemaless: bool) -> str:
    then = call_text(after_create(result.id, schemaless=schemaless and not v3))
    if v3:
        step = (
            f"Next: {then}: Prolific made it V3 (legacy CSV), as this workspace has no typed datasets; V3 takes a "
            "CSV file whose columns are shown to participants (META_ columns are hidden), and has no schema."
        )
    elif schemaless:
        step = f"Next: {then} (suggest_schema helps); an upload before that waits in pending_schema."
    else:
        step = f"Next: {then}."
    return f'Created dataset "{one_line(result.name or "", 120)}" ({result.id}).\n{dataset_view(result)}\n\n{step}'


def schema_refused_by_workspace(workspace_id: str, name: str, exc: BaseException) -> str:
    """create_dataset with fields, refused because the workspace has no typed (V4) datasets."""
    legacy = f"create_dataset(name={orjson.dumps(name).decode()}, workspace_id={orjson.dumps(workspace_id).decode()})"
    return (
        f"Prolific refused the schema for workspace {workspace_id}: typed (V4) datasets are a workspace feature, "
        f"and this workspace does not have it ({one_line(str(exc), 300)}). Nothing was created. Either pick a "
        "workspace with typed datasets (list_workspaces) and call create_dataset there with the same fields, or "
        f"use the legacy CSV path here: {legacy} (no fields) makes a V3 dataset, which takes one CSV file whose "
        "columns are shown to participants (META_ columns are hidden) and has no schema. Prolific's support can "
        "enable typed datasets for a workspace."
    )


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
        f"Migration {job.job_id} is still {one_line(job.status, 30)} ({job.reprocessed_count or 0:,} datapoints "
        f're-checked so far). Next: get_dataset(dataset_id="{dataset_id}") in a minute shows its status and the '
        "schema in force."
    )


def migration_status(dataset_id: str, job: MigrationJob, datapoints: int | None) -> str:
    """get_dataset's line on the latest schema migration this server started on the dataset."""
    if job.is_terminal:
        return f"Latest schema migration: {migration(dataset_id, job)}"
    of = f" of {datapoints:,}" if datapoints else ""
    return (
        f"Schema migration {job.job_id} is still {one_line(job.status, 30)}: {job.reprocessed_count or 0:,}{of} "
        f'datapoints re-checked so far. Call get_dataset(dataset_id="{dataset_id}") again to follow it; appends '
        "and imports wait until it ends."
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
    tail = []
    if retried:
        tail.append("(The request was sent more than once after a network error; appends are idempotent.)")
    if rejected:
        tail.append("Next: fix the rejected records and append them again (only those: the others are in).")
    if accepted - duplicates > 0:
        tail.append("New datapoints reach a running batch after a batch sync.")
    return bounded(lines, groups, tail, excerpts=False)


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


def append_still_blocked(dataset_id: str, import_id: str | None = None, wait: float | None = None) -> str:
    """An append that waited its whole wait behind a running import or migration: nothing was appended."""
    if import_id is not None:
        follow = call("get_import_status", dataset_id=dataset_id, import_id=import_id, wait_seconds=wait)
        if wait is None:
            follow = call("get_import_status", dataset_id=dataset_id, import_id=import_id)
        return (
            f"import {import_id} is still running on {dataset_id}, and appends wait for it: nothing was appended. "
            f"Next: {call_text(follow)} until it finishes, then call append_records again with the same records"
        )
    return (
        f"an import or schema migration is still running on {dataset_id}, and appends wait for it: nothing was "
        f'appended. Next: get_dataset(dataset_id="{dataset_id}") shows what is running; then call append_records '
        "again with the same records"
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


def after_suggest(suggestion: SuggestedSchema) -> NextCall:
    """create_dataset with the suggested fields; the name is the agent's to choose."""
    return call("create_dataset", ["name"], fields=field_list(suggestion.fields), strict=suggestion.strict)
