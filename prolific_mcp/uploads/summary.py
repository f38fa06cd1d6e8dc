"""Import outcomes in plain English (DESIGN §8), and the rejected-records file.

`group_errors` turns Prolific's error list into groups by (field, reason) whose counts always add up to the
import's `rejected_count`; `pick_records` streams the itemised rejected records back out of the local file (for
excerpts and for the rejected-records file); `build_summary` writes the text an agent reads, at most 2,000
characters whatever the number of errors.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from prolific_mcp.records import FileFormat, iter_records, missing_key_from_reason
from prolific_mcp.records.rules import RAW_FIELD
from prolific_mcp.text import fence, number_ranges, one_line, plural, visible, visible_json
from prolific_mcp.uploads.files import READ_CHUNK

MAX_TEXT: Final = 2000
MAX_GROUPS: Final = 50
MAX_NUMBERS: Final = 20
NOT_ITEMISED: Final = "not itemised by Prolific"
OTHER: Final = "other problems"


@dataclass(frozen=True, slots=True)
class ErrorItem:
    """One entry of an import's `errors` list (all parts optional, as Prolific documents)."""

    record_index: int | None
    field: str | None
    reason: str | None


@dataclass(slots=True)
class RejectionGroup:
    """Rejected records that share a cause."""

    field: str | None
    reason: str
    count: int = 0
    record_indexes: list[int] = dataclasses.field(default_factory=list)
    """0-based indexes of the first records (at most 20)."""
    lines: list[int] = dataclasses.field(default_factory=list)
    excerpt: str | None = None

    @property
    def key(self) -> str | None:
        """The field concerned: the named one, or the key a 'missing required field' reason names."""
        if self.field is not None and self.field != RAW_FIELD:
            return self.field
        return missing_key_from_reason(self.reason)

    @property
    def records(self) -> list[int]:
        """1-based record numbers, as people count."""
        return [i + 1 for i in self.record_indexes]

    @property
    def fix(self) -> str:
        return suggest_fix(self.field, self.reason)


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
    if "exceeds maximum length" in lowered:
        return "shorten the text (or split the record in two)"
    if "audio url" in lowered or "video url" in lowered:
        return "link directly to a media file with one of the allowed extensions"
    if "url" in lowered:
        return "use absolute http(s) links with a host, such as https://cdn.example.com/file.png"
    if "expected text" in lowered:
        return "write the value as a string (in quotes)"
    if "task_group_id" in lowered:
        return "give each record a non-empty group id (a string or an integer)"
    if "cells but the header" in lowered:
        return "quote cells that contain commas, or remove the extra cells"
    if "utf-8" in lowered or "utf-16" in lowered:
        return "save the file as UTF-8"
    if "json array" in lowered or "pretty-printed" in lowered:
        return "write one JSON object per line (JSON Lines), without surrounding brackets"
    if "no header" in lowered or "header" in lowered:
        return "make the first line of the CSV the field keys, separated by commas"
    if "delimiter" in lowered:
        return "export the CSV again with commas as separators"
    if "empty" in lowered or "no records" in lowered:
        return "check that the file has records in it"
    return "correct the value as the reason says"


def group_errors(errors: Iterable[ErrorItem], rejected_count: int) -> list[RejectionGroup]:
    """Groups by (field, reason), largest first; their counts add up to `rejected_count`.

    At most 50 groups (the rest fold into 'other problems'); records Prolific counted but did not list form a
    'not itemised by Prolific' group.
    """
    groups: dict[tuple[str | None, str], RejectionGroup] = {}
    itemised = 0
    seen: set[int] = set()
    for item in errors:
        if item.record_index is not None:
            if item.record_index in seen:
                continue
            seen.add(item.record_index)
        itemised += 1
        reason = item.reason or "no reason given"
        key = (item.field, reason)
        group = groups.get(key)
        if group is None:
            if len(groups) >= MAX_GROUPS - 2:  # room for 'other problems' and 'not itemised'
                key = (None, OTHER)
                group = groups.get(key)
            if group is None:
                group = groups[key] = RejectionGroup(key[0], key[1])
        group.count += 1
        if item.record_index is not None and len(group.record_indexes) < MAX_NUMBERS:
            group.record_indexes.append(item.record_index)
    ordered = sorted(groups.values(), key=lambda g: (-g.count, g.record_indexes[:1] or [0]))
    if rejected_count > itemised:
        ordered.append(RejectionGroup(None, NOT_ITEMISED, count=rejected_count - itemised))
    return ordered


@dataclass(frozen=True, slots=True)
class PickedRecord:
    index: int
    line: int
    raw: bytes
    """The record as it was in the file: a JSONL line, or a CSV row (re-quoted by the csv module)."""
    value: dict[str, object] | None


def pick_records(fd: int, fmt: FileFormat, indexes: set[int]) -> Iterator[PickedRecord]:
    """Stream the records whose 0-based index is in `indexes` out of a file, in file order."""
    if not indexes:
        return
    last = max(indexes)
    with os.fdopen(os.dup(fd), "rb", buffering=READ_CHUNK) as stream:
        stream.seek(0)
        if fmt == "jsonl":
            index = 0
            for line_no, line in enumerate(stream, 1):
                body = line[3:] if line_no == 1 and line.startswith(b"\xef\xbb\xbf") else line
                if not body.strip():
                    continue
                if index in indexes:
                    try:
                        value = orjson.loads(body)
                    except orjson.JSONDecodeError:
                        value = None
                    yield PickedRecord(index, line_no, body.rstrip(b"\r\n"), value if type(value) is dict else None)
                if index >= last:
                    return
                index += 1
            return
        for rec in iter_records(stream, "csv"):
            if rec.index in indexes:
                buf = io.StringIO()
                if rec.value is not None:
                    csv.writer(buf, lineterminator="").writerow(["" if v is None else v for v in rec.value.values()])
                yield PickedRecord(rec.index, rec.line, buf.getvalue().encode(), rec.value)
            if rec.index >= last:
                return


def csv_header(fd: int) -> bytes:
    """The header row of a CSV file, as a CSV line."""
    with os.fdopen(os.dup(fd), "rb") as stream:
        stream.seek(0)
        for line in stream:
            text = line.decode("utf-8", "replace").lstrip("\ufeff")
            row = next(csv.reader([text]), [])
            if any(c.strip() for c in row):
                buf = io.StringIO()
                csv.writer(buf, lineterminator="").writerow(row)
                return buf.getvalue().encode()
    return b""


def rejected_path(original: Path) -> Path:
    """`<stem>.rejected<ext>` beside the original, or `.rejected.1<ext>`, `.2`… when taken."""
    stem, ext = original.stem, original.suffix
    candidate = original.with_name(f"{stem}.rejected{ext}")
    n = 0
    while candidate.exists():
        n += 1
        candidate = original.with_name(f"{stem}.rejected.{n}{ext}")
    return candidate


def write_rejected_file(
    original: Path,
    fd: int,
    fmt: FileFormat,
    indexes: set[int],
    on_record: Callable[[PickedRecord], None] | None = None,
) -> tuple[Path, int]:
    """Write the itemised rejected records beside the original; returns the path and how many were written.

    The file is created exclusively (never overwriting) and is a valid JSONL or CSV file (CSV keeps the header).
    """
    for _ in range(100):
        target = rejected_path(original)
        try:
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - a hundred races in a row
        raise FileExistsError(f"could not find a free name beside {original}")
    written = 0
    with os.fdopen(out, "wb") as sink:
        if fmt == "csv":
            sink.write(csv_header(fd) + b"\n")
        for picked in pick_records(fd, fmt, indexes):
            sink.write(picked.raw + b"\n")
            written += 1
            if on_record is not None:
                on_record(picked)
    return target, written


def attach_excerpts(groups: Sequence[RejectionGroup], picked: Iterable[PickedRecord]) -> None:
    """Give each group the line of its first record and a cleaned excerpt of the offending value."""
    by_index = {p.index: p for p in picked}
    for group in groups:
        group.lines = [by_index[i].line for i in group.record_indexes if i in by_index]
        first = next((by_index[i] for i in group.record_indexes if i in by_index), None)
        if first is None:
            continue
        if group.field and group.field != RAW_FIELD and first.value is not None and group.field in first.value:
            value = first.value[group.field]
            group.excerpt = one_line(value if isinstance(value, str) else orjson.dumps(value).decode())
        elif group.field == RAW_FIELD or first.value is None:
            group.excerpt = one_line(first.raw.decode("utf-8", "replace"))


@dataclass(slots=True)
class SummaryInput:
    """What the summary says, gathered by the caller."""

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
    upload_path: str | None = None


def build_summary(s: SummaryInput) -> str:
    """The human summary: counts, causes with record numbers and fixes, excerpts, what it means, next step."""
    head: list[str] = []
    name = one_line(s.filename, 60)
    ids = f"(dataset {s.dataset_id}" + (f", import {s.import_id})" if s.import_id else ")")
    if s.status in ("complete", "partial"):
        new = s.accepted - s.duplicates
        line = f"{s.status.capitalize()}: {name} {ids}: {plural(s.accepted, 'record')} accepted"
        if s.rejected:
            line += f", {plural(s.rejected, 'record')} rejected"
        if s.duplicates:
            line += f" ({s.duplicates:,} of the accepted were already in the dataset, so {new:,} are new)"
        head.append(line + ".")
        if s.total_datapoints is not None:
            head.append(f"The dataset now has {plural(s.total_datapoints, 'datapoint')}.")
        if s.duplicates and new == 0 and s.accepted:
            head.append("Every accepted record was a duplicate: nothing new was added.")
    elif s.status == "failed":
        head.append(f"Failed: {name} {ids}: nothing was imported.")
        if s.reason:
            head.append(f"Reason given: {one_line(s.reason, 300)}")
        if s.rejected:
            head.append(f"{plural(s.rejected, 'record')} were rejected.")
        if s.groups:
            head.append("Likely fix: correct the records listed below, then upload the corrected file.")
        else:
            head.append(f"Likely fix: {suggest_fix(None, s.reason or '')}; then upload the corrected file.")
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

    causes: list[str] = []
    excerpts: list[str] = []
    for n, group in enumerate(s.groups, 1):
        who = group.key or ("whole record" if group.field == RAW_FIELD else "record")
        numbers = number_ranges(group.records, MAX_NUMBERS)
        where = (f": record {numbers}" if len(group.records) == 1 else f": records {numbers}") if numbers else ""
        if group.count > len(group.records) and numbers:
            where += f" and {group.count - len(group.records):,} more"
        if group.lines:
            where += f" (line{'s' if len(group.lines) > 1 else ''} {number_ranges(group.lines, 5)})"
        causes.append(
            f"{n}. {one_line(who, 60)}: {one_line(group.reason, 160)} — {plural(group.count, 'record')}{where}. "
            f"Fix: {group.fix}."
        )
        if group.excerpt and group.records:
            excerpts.append(f"record {group.records[0]} ({one_line(who, 40)}): {group.excerpt}")

    tail: list[str] = []
    if s.rejected_file is not None and s.rejected_written is not None:
        tail.append(f"{s.rejected_written:,} of {s.rejected:,} rejected records written to {s.rejected_file}.")
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
    return _bounded(head, causes, excerpts, tail)


def _bounded(head: list[str], causes: list[str], excerpts: list[str], tail: list[str] | None = None) -> str:
    """Join the sections, dropping causes and excerpts from the end until the text fits in 2,000 characters."""
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
