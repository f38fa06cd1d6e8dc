"""Streaming readers for the two record formats Prolific imports: JSON Lines and CSV.

`iter_records` reads one record at a time from a seekable binary stream, in constant memory. Problems with the
whole file (empty, a JSON array, no CSV header, not UTF-8) raise `FileFailure` before the first record; problems
with one record come back on that record as `raw_error` (Prolific's `_raw` field).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO, Final, Literal

import orjson

FileFormat = Literal["jsonl", "csv"]

CONTENT_TYPES: Final[dict[str, str]] = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "zip": "application/zip",
}
"""Content types by upload extension (docs/prolific-api.md, Where the docs are silent: 4)."""

HEAD_BYTES: Final = 64 * 1024
UTF8_BOM: Final = b"\xef\xbb\xbf"
MAX_RECORD_BYTES: Final = 10 * 1024 * 1024
"""The longest line (JSONL record, CSV line or field) read: a longer one is reported, skipped, never parsed whole.

Prolific documents no limit; 10 MiB is far beyond any text a field can hold (10,000 characters), and keeps the
memory of a pass bounded whatever the file holds."""
SKIP_CHUNK: Final = 1024 * 1024

csv.field_size_limit(MAX_RECORD_BYTES)


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
    signed = next((kind for signature, kind in _SIGNATURES if head.startswith(signature)), None)
    if signed is None and (head.startswith((b"\xff\xfe", b"\xfe\xff")) or _utf16_pattern(head[:4096])):
        return (
            "the file is UTF-16 (or another wide encoding), not UTF-8: save or export it again as UTF-8 "
            "(in Excel: 'CSV UTF-8 (Comma delimited)')"
        )
    kind = _binary_kind(head)
    if kind is not None:
        return f"this is a binary file ({kind}), not text: pass the .jsonl or .csv file that holds the records" + (
            " (in Excel: File > Save As > 'CSV UTF-8 (Comma delimited)')" if "Excel" in kind else ""
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


_SIGNATURES: Final = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive, which is also what an Excel .xlsx workbook is"),
    (b"\xd0\xcf\x11\xe0", "an Office document, such as an old Excel .xls workbook"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"SQLite format 3", "an SQLite database"),
)


def _utf16_pattern(head: bytes) -> bool:
    """Text in UTF-16 without a BOM: mostly ASCII, so nearly every other byte (odd ones for little-endian, even
    ones for big-endian) is NUL and the rest are not."""
    if len(head) < 4 or b"\x00" not in head:
        return False
    even, odd = head[0::2], head[1::2]
    for zeros, chars in ((odd, even), (even, odd)):
        if zeros.count(0) >= 0.9 * len(zeros) and chars.count(0) <= 0.1 * len(chars):
            return True
    return False


def _binary_kind(head: bytes) -> str | None:
    """What a binary file is ('a PNG image', ...), 'binary data' for any other NUL byte, None for text."""
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if b"\x00" in head[:4096]:
        return "it holds NUL bytes, which text never does"
    return None


def _read_head(stream: BinaryIO) -> bytes:
    start = stream.tell()
    head = stream.read(HEAD_BYTES)
    stream.seek(start)
    return head


def iter_records(
    stream: BinaryIO,
    fmt: FileFormat,
    *,
    header_keys: Collection[str] | None = None,
    exact_keys: Collection[str] | None = None,
) -> Iterator[RawRecord]:
    """Yield the records of a seekable binary stream, starting at its current position, in bounded memory.

    `header_keys` (the schema's keys) lets a CSV reader tell a header from a first data row: a header that names
    none of them means the file has no header. Raises FileFailure for problems with the file as a whole.

    Integers beyond 64 bits are kept exact in the values of `exact_keys` (`exact_keys_of(schema)`: the fields
    whose values may be numbers), or in every value when it is None (slower). A line longer than
    MAX_RECORD_BYTES is read through in chunks and comes back as an unreadable record saying so.
    """
    head = _read_head(stream)
    if not head.strip().strip(UTF8_BOM).strip():
        raise FileFailure("the file is empty: it has no records")
    problem = encoding_problem(head)
    if problem is not None:
        raise FileFailure(problem)
    if fmt == "jsonl":
        return _iter_jsonl(stream, exact_keys)
    return _iter_csv(stream, header_keys)


def too_long_reason(size: int, what: str = "Record") -> str:
    """The reason given for a record over MAX_RECORD_BYTES (it is skipped, not parsed)."""
    return (
        f"{what} is {size / 1024**2:,.1f} MiB long, over the {MAX_RECORD_BYTES // 1024**2} MiB this server reads "
        "of one record: it was skipped, not checked; split or shorten it"
    )


def _skip_rest_of_line(stream: BinaryIO, taken: int) -> int:
    """Read to the end of an over-long line in bounded chunks; its whole length."""
    size = taken
    readline = stream.readline
    while True:
        more = readline(SKIP_CHUNK)
        size += len(more)
        if not more or more.endswith(b"\n"):
            return size


def _bounded_lines(stream: BinaryIO) -> Iterator[bytes]:
    """The stream's lines, none longer than MAX_RECORD_BYTES + 1 (a longer line comes cut: see `_is_cut`)."""
    return iter(partial(stream.readline, MAX_RECORD_BYTES + 1), b"")


def _is_cut(line: bytes) -> bool:
    return len(line) > MAX_RECORD_BYTES and not line.endswith(b"\n")


def jsonl_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(1-based line number, line) of a JSONL stream in bounded memory, the BOM dropped from line 1; a line over
    MAX_RECORD_BYTES is read through in chunks and comes as None (the record `iter_records` reports too long)."""
    for line_no, line in enumerate(_bounded_lines(stream), 1):
        if _is_cut(line):
            _skip_rest_of_line(stream, len(line))
            yield line_no, None
        elif line_no == 1 and line.startswith(UTF8_BOM):
            yield line_no, line[3:]
        else:
            yield line_no, line


_SIMPLE_TYPES: Final = frozenset({str, int, bool, type(None)})
_all_simple = _SIMPLE_TYPES.issuperset
_MAYBE_BIG: Final = frozenset({float, dict, list})
_FLOAT_LIMIT: Final = 9.2e18
"""orjson parses an integer beyond 64 bits as a float: a float this large may have been such an integer."""


def _has_big_float(values: Iterable[object]) -> bool:
    for value in values:
        kind = type(value)
        if kind is float:
            if not -_FLOAT_LIMIT < value < _FLOAT_LIMIT:  # type: ignore[operator]
                return True
        elif kind is dict:
            if _has_big_float(value.values()):  # type: ignore[attr-defined]
                return True
        elif kind is list and _has_big_float(value):  # type: ignore[arg-type]
            return True
    return False


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def exact_loads(line: bytes) -> object:
    """Parse JSON with integers beyond 64 bits kept exact (the standard library's parser; slower, so only when
    orjson's answer holds a float that large)."""
    return json.loads(line, parse_constant=_refuse_constant)


def _exact(line: bytes, value: dict[str, object]) -> dict[str, object]:
    """`value` (orjson's parse of `line`), or an exact parse when it may hold an integer beyond 64 bits."""
    if not _has_big_float(value.values()):
        return value
    exact = exact_loads(line)
    return exact if type(exact) is dict else value


def _needs_exact_for(keys: Collection[str] | None) -> Callable[[dict[str, object]], bool] | None:
    """A quick test of a parsed record: may a value that matters hold an integer beyond 64 bits?

    orjson turns such an integer into a float; the test looks for a float (or a list or an object, which may hold
    one) among the values of `keys`, or among all values when `keys` is None; None when no value matters."""
    if keys is None:
        return lambda value: not _all_simple(map(type, value.values()))
    chosen = tuple(keys)
    if not chosen:
        return None
    maybe = _MAYBE_BIG

    if len(chosen) == 1:
        (k0,) = chosen
        return lambda value: type(value.get(k0)) in maybe
    if len(chosen) == 2:
        k0, k1 = chosen
        return lambda value: type(value.get(k0)) in maybe or type(value.get(k1)) in maybe

    disjoint = maybe.isdisjoint
    return lambda value: not disjoint(map(type, map(value.get, chosen)))


def _iter_jsonl(stream: BinaryIO, exact_keys: Collection[str] | None = None) -> Iterator[RawRecord]:
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    needs_exact = _needs_exact_for(exact_keys)
    has_big_float = _has_big_float
    maybe = _MAYBE_BIG
    # Up to two keys (the common schemas) are tested inline, without a call: a missing key reads as None.
    inline = exact_keys is not None and len(exact_keys) <= 2
    k0, k1 = (*exact_keys, None, None)[:2] if exact_keys is not None and inline else (None, None)
    cap = MAX_RECORD_BYTES
    index = 0
    lines = enumerate(_bounded_lines(stream), 1)
    for line_no, line in lines:
        if _is_cut(line):
            yield RawRecord(0, line_no, None, too_long_reason(_skip_rest_of_line(stream, len(line))))
            index = 1
            break
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
        if len(line) > cap and _is_cut(line):
            yield RawRecord(index, line_no, None, too_long_reason(_skip_rest_of_line(stream, len(line))))
            index += 1
            continue
        try:
            value = loads(line)
        except decode_error:
            if not line.strip():
                continue
            yield _jsonl_record(index, line_no, line)
        else:
            if type(value) is dict:
                if (
                    (type(value.get(k0)) in maybe or type(value.get(k1)) in maybe)
                    if inline
                    else needs_exact is not None and needs_exact(value)
                ) and has_big_float(value.values()):
                    exact = exact_loads(line)  # `_exact` inlined: this loop runs once per record
                    if type(exact) is dict:
                        value = exact
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
    return RawRecord(index, line_no, _exact(line, value), None)


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


class _CsvLines:
    """The decoded lines of a CSV stream for `csv.reader`, over-long lines skipped (and noted in `skipped`)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.physical = 0
        """The number of the last physical line read."""
        self.skipped: list[tuple[int, int]] = []
        """(line number, length) of the over-long lines skipped and not yet reported."""

    def __iter__(self) -> Iterator[str]:
        for line in _bounded_lines(self.stream):
            self.physical += 1
            if _is_cut(line):
                self.skipped.append((self.physical, _skip_rest_of_line(self.stream, len(line))))
                continue
            if self.physical == 1 and line.startswith(UTF8_BOM):
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


def _next_row(reader: Iterator[list[str]]) -> list[str] | str | None:
    """The next row, the reason it cannot be read (a field over the limit...), or None at the end."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        text = str(exc)
        if "field larger than field limit" in text:
            return (
                f"A field of this row is over the {MAX_RECORD_BYTES // 1024**2} MiB this server reads of one "
                "field: it was skipped, not checked; split or shorten it"
            )
        return f"Row is not valid CSV: {_short(text)}"


def _iter_csv(stream: BinaryIO, header_keys: Collection[str] | None) -> Iterator[RawRecord]:
    lines = _CsvLines(stream)
    reader = csv.reader(lines)
    header: list[str] | None = None
    while (row := _next_row(reader)) is not None:
        if isinstance(row, str):
            raise FileFailure(f"the CSV header cannot be read: {row}")
        if lines.skipped:
            raise FileFailure(
                f"the CSV header line is over the {MAX_RECORD_BYTES // 1024**2} MiB this server reads of one line: "
                "check that the file is a CSV file with a header line"
            )
        if row and any(cell.strip() for cell in row):
            header = _check_header(row, header_keys)
            break
    if header is None:
        raise FileFailure("the CSV file has no rows: it needs a header line and at least one record")
    width = len(header)
    index = 0
    last_line = lines.physical
    while (row := _next_row(reader)) is not None:
        for line_no, size in lines.skipped:
            yield RawRecord(index, line_no, None, too_long_reason(size, "Line"))
            index += 1
            last_line = max(last_line, line_no)
        lines.skipped.clear()
        start_line = last_line + 1
        last_line = lines.physical
        if isinstance(row, str):
            yield RawRecord(index, start_line, None, row)
        elif not row or (len(row) == 1 and not row[0]):
            continue
        elif len(row) > width:
            yield RawRecord(index, start_line, None, f"Row has {len(row)} cells but the header has {width} columns")
        elif _has_surrogates(row):
            yield RawRecord(index, start_line, None, "Row is not valid UTF-8 text")
        else:
            value: dict[str, object] = {
                key: (cell if cell != "" else None) for key, cell in zip(header, row, strict=False)
            }
            yield RawRecord(index, start_line, value, None)
        index += 1
    for line_no, size in lines.skipped:
        yield RawRecord(index, line_no, None, too_long_reason(size, "Line"))
        index += 1
