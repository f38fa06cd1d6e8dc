"""Streaming readers for the two record formats Prolific imports: JSON Lines and CSV.

`iter_records` reads one record at a time from a seekable binary stream, in constant memory. Problems with the
whole file (empty, a JSON array, no CSV header, not UTF-8) raise `FileFailure` before the first record; problems
with one record come back on that record as `raw_error` (Prolific's `_raw` field).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, Literal

import orjson

FileFormat = Literal["jsonl", "csv"]

CONTENT_TYPES: Final[dict[str, str]] = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "zip": "application/zip",
}
"""Content types by upload extension (API.md §12.3)."""

HEAD_BYTES: Final = 64 * 1024
UTF8_BOM: Final = b"\xef\xbb\xbf"

csv.field_size_limit(64 * 1024 * 1024)


class FileFailure(Exception):
    """The file as a whole cannot be imported; `reason` says why and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class RawRecord:
    """One record as read: 0-based `index` among records, 1-based `line` where it starts in the file.

    `value` is the parsed record (CSV: empty cells as None), or None with `raw_error` saying why it is unreadable.
    """

    index: int
    line: int
    value: dict[str, object] | None
    raw_error: str | None


def format_from_filename(name: str) -> FileFormat | None:
    """'jsonl' for .jsonl/.ndjson, 'csv' for .csv, None for anything else."""
    ext = os.path.splitext(name)[1].lower()
    if ext in (".jsonl", ".ndjson"):
        return "jsonl"
    if ext == ".csv":
        return "csv"
    return None


def encoding_problem(head: bytes) -> str | None:
    """Why the start of a file is not UTF-8 text we can import, or None.

    `head` is the first bytes of the file (a multi-byte character cut at its end is fine).
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) >= 2 and b"\x00" in head[:4096]):
        return (
            "the file is UTF-16 (or another wide encoding), not UTF-8: save or export it again as UTF-8 "
            "(in Excel: 'CSV UTF-8 (Comma delimited)')"
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return (
                f"the file is not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {exc.start}): "
                "save it again as UTF-8"
            )
    return None


def _read_head(stream: BinaryIO) -> bytes:
    start = stream.tell()
    head = stream.read(HEAD_BYTES)
    stream.seek(start)
    return head


def iter_records(
    stream: BinaryIO, fmt: FileFormat, *, header_keys: Collection[str] | None = None
) -> Iterator[RawRecord]:
    """Yield the records of a seekable binary stream, starting at its current position.

    `header_keys` (the schema's keys) lets a CSV reader tell a header from a first data row: a header that names
    none of them means the file has no header. Raises FileFailure for problems with the file as a whole.
    """
    head = _read_head(stream)
    if not head.strip().strip(UTF8_BOM).strip():
        raise FileFailure("the file is empty: it has no records")
    problem = encoding_problem(head)
    if problem is not None:
        raise FileFailure(problem)
    if fmt == "jsonl":
        return _iter_jsonl(stream)
    return _iter_csv(stream, header_keys)


def _iter_jsonl(stream: BinaryIO) -> Iterator[RawRecord]:
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    index = 0
    lines = enumerate(stream, 1)
    for line_no, line in lines:
        if line_no == 1 and line.startswith(UTF8_BOM):
            line = line[3:]
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(b"["):
            raise FileFailure(
                "the file is a JSON array, not JSON Lines: write one JSON object per line, "
                "with no surrounding [ ] and no commas between records"
            )
        if stripped == b"{":
            raise FileFailure(
                "the file looks like pretty-printed JSON (a record spread over several lines): "
                "JSON Lines needs each record on a single line"
            )
        yield _jsonl_record(0, line_no, line)
        index = 1
        break
    for line_no, line in lines:
        try:
            value = loads(line)
        except decode_error:
            if not line.strip():
                continue
            yield _jsonl_record(index, line_no, line)
        else:
            if type(value) is dict:
                yield RawRecord(index, line_no, value, None)
            else:
                yield _jsonl_record(index, line_no, line)
        index += 1


def _jsonl_record(index: int, line_no: int, line: bytes) -> RawRecord:
    """The record of one non-blank JSONL line (the slow path: the first line, and unreadable or non-object lines)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return RawRecord(index, line_no, None, f"Malformed JSON: {_json_problem(exc)}")
    if type(value) is not dict:
        return RawRecord(index, line_no, None, f"Record is not a JSON object (got {_json_kind(value)})")
    return RawRecord(index, line_no, value, None)


_POSITION = re.compile(r":\s*line \d+ column \d+ \(char (\d+)\)\s*$")


def _json_problem(exc: Exception) -> str:
    """orjson's message without its line/column (relative to the record, which confuses people)."""
    text = str(exc)
    match = _POSITION.search(text)
    if match:
        text = f"{text[: match.start()]} (at character {int(match.group(1)) + 1})"
    return _short(text)


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decoded_lines(stream: BinaryIO) -> Iterator[str]:
    first = True
    for line in stream:
        if first:
            first = False
            if line.startswith(UTF8_BOM):
                line = line[3:]
        yield line.decode("utf-8", "surrogateescape")


def _has_surrogates(cells: list[str]) -> bool:
    for cell in cells:
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


def _check_header(header: list[str], header_keys: Collection[str] | None) -> list[str]:
    names = [h.strip() for h in header]
    if len(names) == 1 and (";" in names[0] or "\t" in names[0]):
        sep = "';'" if ";" in names[0] else "a tab"
        raise FileFailure(
            f"the CSV uses {sep} as its delimiter; Prolific reads comma-separated files: "
            "export it again as CSV with commas (UTF-8)"
        )
    if _has_surrogates(names):
        raise FileFailure("the CSV header is not UTF-8 text: save the file again as UTF-8")
    seen: set[str] = set()
    for name in names:
        if not name:
            raise FileFailure("the CSV header has an empty column name: name every column with its field key")
        if name in seen:
            raise FileFailure(f"the CSV header names the column {name[:60]!r} twice: column names must be unique")
        seen.add(name)
    if header_keys and not seen.intersection(header_keys):
        shown = ", ".join(names[:5])[:120]
        keys = ", ".join(list(header_keys)[:8])[:160]
        raise FileFailure(
            f"the CSV has no header row: its first line ({shown}) names none of the schema's fields ({keys}); "
            "add a first line with the field keys as column names"
        )
    return names


def _iter_csv(stream: BinaryIO, header_keys: Collection[str] | None) -> Iterator[RawRecord]:
    reader = csv.reader(_decoded_lines(stream))
    header: list[str] | None = None
    for row in reader:
        if row and any(cell.strip() for cell in row):
            header = _check_header(row, header_keys)
            break
    if header is None:
        raise FileFailure("the CSV file has no rows: it needs a header line and at least one record")
    width = len(header)
    index = 0
    last_line = reader.line_num
    for row in reader:
        start_line = last_line + 1
        last_line = reader.line_num
        if not row or (len(row) == 1 and not row[0]):
            continue
        if len(row) > width:
            yield RawRecord(index, start_line, None, f"Row has {len(row)} cells but the header has {width} columns")
        elif _has_surrogates(row):
            yield RawRecord(index, start_line, None, "Row is not valid UTF-8 text")
        else:
            value: dict[str, object] = {
                key: (cell if cell != "" else None) for key, cell in zip(header, row, strict=False)
            }
            yield RawRecord(index, start_line, value, None)
        index += 1
