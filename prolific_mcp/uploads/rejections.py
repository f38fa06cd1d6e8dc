"""Rejected records grouped by cause: one type, one grouping, the limits defined once.

Whatever found the rejections (the local pre-flight scan, Prolific's import errors, an append's answer), they are
grouped here by (field, reason) into `RejectionGroup`s whose counts add up to the number rejected. The itemised
rejected records are streamed back out of the local file for excerpts and for the rejected-records file; `explain`
does both for a finished upload in one pass. The words an agent reads about them are `operations/render.py`'s.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

import anyio
import orjson

from prolific_mcp.api.models import AppendResult, ImportJob
from prolific_mcp.records import FileFormat, iter_records
from prolific_mcp.records.formats import jsonl_lines
from prolific_mcp.records.rules import RAW_FIELD
from prolific_mcp.records.suggest import suggest_schema
from prolific_mcp.text import one_line
from prolific_mcp.uploads import writes
from prolific_mcp.uploads.groups import ErrorItem, RejectionGroup, group_errors

if TYPE_CHECKING:
    from prolific_mcp.uploads.files import OpenedFile
    from prolific_mcp.uploads.ledger import Ledger, UploadRow

log = logging.getLogger("prolific_mcp.uploads")

MAX_TEXT: Final = 2000
"""At most this many characters in a summary of rejections, whatever their number."""
MAX_GROUPS_SHOWN: Final = 10
"""At most this many groups written out in a text summary; the rest are counted in one '… and N more' line."""
MAX_EXCERPTS: Final = 5
"""At most this many excerpts from the file in a text summary."""
EXCERPT_SOURCE: Final = 4096
"""How much of a record (bytes of its line, characters of a text value) an excerpt is cut from: far more than
an excerpt shows, so white space folded away still leaves enough."""
READ_BUFFER: Final = 1024 * 1024


def error_items(job: ImportJob | AppendResult) -> list[ErrorItem]:
    """An import's (or an append's) itemised errors."""
    return [ErrorItem(e.record_index, e.field, e.reason) for e in job.errors]


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
    with os.fdopen(os.dup(fd), "rb", buffering=READ_BUFFER) as stream:
        stream.seek(0)
        if fmt == "jsonl":
            yield from _pick_jsonl(stream, indexes, last)
            return
        for rec in iter_records(stream, "csv"):
            if rec.index in indexes:
                buf = io.StringIO()
                if rec.value is not None:
                    csv.writer(buf, lineterminator="").writerow(["" if v is None else v for v in rec.value.values()])
                yield PickedRecord(rec.index, rec.line, buf.getvalue().encode(), rec.value)
            if rec.index >= last:
                return


def _pick_jsonl(stream: BinaryIO, indexes: set[int], last: int) -> Iterator[PickedRecord]:
    """The wanted records of a JSONL stream, read in bounded memory (`jsonl_lines`): a line over the record cap
    counts as a record but is never copied (it is not read whole)."""
    index = 0
    for line_no, body in jsonl_lines(stream):
        if body is not None and (not body or body.isspace()):  # no copy of a long line
            continue
        if body is not None and index in indexes:
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError:
                value = None
            yield PickedRecord(index, line_no, body.rstrip(b"\r\n"), value if type(value) is dict else None)
        if index >= last:
            return
        index += 1


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


def write_rejected_file(
    original: Path,
    fd: int,
    fmt: FileFormat,
    indexes: set[int],
    *,
    allowed: Sequence[Path],
    mode: int = 0o600,
    keep: Callable[[Path], bool] | None = None,
    on_record: Callable[[PickedRecord], None] | None = None,
) -> tuple[Path, int] | None:
    """Write the itemised rejected records beside the original through the guarded write (`writes.write_beside`:
    never overwriting, never outside the allowed directories); the path and how many were written, or None when
    `keep` refused the finished file. A valid JSONL or CSV file (CSV keeps the header). Raises writes.WriteFailure."""

    def write(sink: BinaryIO) -> int:
        written = 0
        if fmt == "csv":
            sink.write(csv_header(fd) + b"\n")
        for picked in pick_records(fd, fmt, indexes):
            sink.write(picked.raw + b"\n")
            written += 1
            if on_record is not None:
                on_record(picked)
        return written

    return writes.write_beside(original, allowed, write, mode=mode, keep=keep)


def attach_excerpts(groups: Sequence[RejectionGroup], picked: Iterable[PickedRecord]) -> None:
    """Give each group the lines of its records and a cleaned excerpt of the first one's offending value."""
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
            group.excerpt = one_line(first.raw[:EXCERPT_SOURCE].decode("utf-8", "replace"))


@dataclass(slots=True)
class Explained:
    """A finished import's rejections grouped, and what one pass over the local file added."""

    groups: list[RejectionGroup]
    rejected_file: str | None = None
    """The rejected-records file this pass wrote (None when it wrote none)."""
    rejected_written: int | None = None
    suggested_schema: dict[str, object] | None = None
    """For pending_schema: fields suggested from the file."""
    write_problem: str | None = None
    """Why the rejected-records file could not be written, when it could not."""


async def explain(
    latest: ImportJob,
    opened: OpenedFile | None,
    fmt: FileFormat,
    *,
    ledger: Ledger,
    row: UploadRow | None = None,
    original: Path | None = None,
    allowed: Sequence[Path] = (),
    write_file: bool = False,
) -> Explained:
    """Group a finished import's errors; while `opened` is unchanged, one streaming pass over it adds line numbers
    and excerpts and (with `write_file`, an `original` path and a ledger `row` without one yet) writes the
    rejected-records file beside `original`, once per import. For pending_schema, suggest a schema from the file."""
    out = Explained(group_errors(error_items(latest), latest.rejected_count or 0))
    indexes = {e.record_index for e in latest.errors if e.record_index is not None}
    if opened is not None and indexes and opened.unchanged():
        wanted = {i for group in out.groups for i in group.record_indexes}
        writing = write_file and original is not None and row is not None and row.rejected_file is None
        target = (original, row) if writing and original is not None and row is not None else None
        try:
            picked, wrote = await _read_rejected(opened, fmt, ledger, target, allowed, indexes, wanted)
        except writes.WriteFailure as exc:
            log.warning("%s", exc.reason)
            out.write_problem = exc.reason
            picked, wrote = await anyio.to_thread.run_sync(lambda: _pick(opened, fmt, indexes, wanted)), None
        attach_excerpts(out.groups, picked)
        if wrote is not None:
            out.rejected_file, out.rejected_written = wrote
    if latest.status == "pending_schema" and opened is not None and opened.unchanged():
        try:
            suggestion = await anyio.to_thread.run_sync(lambda: suggest_schema(opened.fd, fmt))
            out.suggested_schema = dict(suggestion.fields)
        except ValueError:
            out.suggested_schema = None
    return out


def _pick(opened: OpenedFile, fmt: FileFormat, indexes: set[int], wanted: set[int]) -> list[PickedRecord]:
    return [_for_excerpts(r) for r in pick_records(opened.fd, fmt, indexes) if r.index in wanted]


def _for_excerpts(record: PickedRecord) -> PickedRecord:
    """The record cut to what an excerpt can show (EXCERPT_SOURCE bytes of the line, as many characters of each
    text value), so that the records kept for excerpts cost kilobytes each whatever their size in the file."""
    value = record.value
    if value is not None and any(isinstance(v, str) and len(v) > EXCERPT_SOURCE for v in value.values()):
        value = {k: v[:EXCERPT_SOURCE] if isinstance(v, str) else v for k, v in value.items()}
    return PickedRecord(record.index, record.line, record.raw[:EXCERPT_SOURCE], value)


async def _read_rejected(
    opened: OpenedFile,
    fmt: FileFormat,
    ledger: Ledger,
    target: tuple[Path, UploadRow] | None,
    allowed: Sequence[Path],
    indexes: set[int],
    wanted: set[int],
) -> tuple[list[PickedRecord], tuple[str, int] | None]:
    """The wanted records picked from the file, and (path, count) when this pass wrote the rejected file."""
    if target is None:
        return await anyio.to_thread.run_sync(lambda: _pick(opened, fmt, indexes, wanted)), None
    original, row = target
    picked: list[PickedRecord] = []

    def keep(record: PickedRecord) -> None:
        if record.index in wanted:
            picked.append(_for_excerpts(record))

    def one_pass() -> tuple[Path, int] | None:
        return write_rejected_file(
            original,
            opened.fd,
            fmt,
            indexes,
            allowed=allowed,
            mode=opened.mode,
            keep=lambda path: ledger.record_rejected_file(row.id, str(path)),  # another process may be first
            on_record=keep,
        )

    wrote = await anyio.to_thread.run_sync(one_pass)
    if wrote is None:
        return picked, None
    return picked, (str(wrote[0]), wrote[1])
