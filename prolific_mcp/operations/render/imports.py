"""Import outcomes: the summary of a finished import, V3 outcomes, the wait that ran out, stored outcomes and why an
upload ended without one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from prolific_mcp.operations.render.calls import call_text
from prolific_mcp.operations.render.errors import error_text
from prolific_mcp.operations.render.groups import bounded, fix_of, suggest_fix
from prolific_mcp.operations.results import NextCall
from prolific_mcp.records.rules import RAW_FIELD
from prolific_mcp.text import number_ranges, one_line, plural
from prolific_mcp.uploads.groups import MAX_RECORD_NUMBERS, RejectionGroup


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
