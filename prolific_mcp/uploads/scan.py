"""The one-pass pre-flight scan of a file (docs/architecture.md, Files and pre-flight): its sha256, its record
count, and the records the schema would reject, grouped, in constant memory.

Light on imports on purpose: the scan of a large file runs in a child process (`background_scan.py`), whose
start-up time is the import of this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from prolific_mcp.records import FileFailure, FileFormat, RecordRules, RecordValidator, Schema, iter_records
from prolific_mcp.records.rules import RAW_FIELD, checked_exact_keys_of
from prolific_mcp.uploads.groups import Grouper, RejectionGroup

READ_CHUNK: Final = 1024 * 1024
MAX_FILE_KEYS: Final = 1000
"""The pre-flight notes at most this many distinct keys of a file (enough to compare with any schema)."""


class _Sha256Thread:
    """A sha256 computed in its own thread from the chunks handed to it, so that hashing (which releases the GIL)
    runs beside the scan's parsing on another core: the scan takes the longer of the two, not their sum."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, name="prolific-mcp-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._digest.update(chunk)

    def update(self, data: bytes) -> None:
        self._chunks.put(data)

    def close(self) -> None:
        if self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._digest.hexdigest()


class _HashingReader(io.RawIOBase):
    """Positional reads from a descriptor that feed every byte, once, into a sha256 (seeking back is allowed)."""

    def __init__(self, fd: int, *, digest: bool = True, on_read: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self._on_read = on_read
        self._fd = fd
        self._pos = 0
        self.hashed = 0
        """Bytes read once from the start (all of them hashed when there is a digest)."""
        self.digest = _Sha256Thread() if digest else None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = os.fstat(self._fd).st_size + offset
        return self._pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = _pread(self._fd, len(buffer), self._pos)
        n = len(data)
        buffer[:n] = data
        end = self._pos + n
        if end > self.hashed and self._pos <= self.hashed:
            if self.digest is not None:
                self.digest.update(data[self.hashed - self._pos :] if self.hashed > self._pos else data)
            self.hashed = end
            if self._on_read is not None:
                self._on_read(end)
        self._pos = end
        return n


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, size)  # pragma: no cover - Windows


@dataclass(slots=True)
class ScanReport:
    """What one streaming pass over a file found."""

    sha256: str
    size: int
    format: FileFormat
    record_count: int
    failure: str | None = None
    """A reason the import is certain to fail as a whole; the upload must not start."""
    groups: list[RejectionGroup] = dataclasses.field(default_factory=list)
    rejected: int = 0
    missing_everywhere: list[str] = dataclasses.field(default_factory=list)
    """Strict-schema keys no record has: every record would be rejected."""
    parsed: int = 0
    """Records that could be read (the rest are unreadable lines or rows)."""
    file_keys: list[str] = dataclasses.field(default_factory=list)
    """The keys the records use, in the order first seen (at most MAX_FILE_KEYS; only with a schema)."""
    missing_keys: list[str] = dataclasses.field(default_factory=list)
    """Schema keys no record has a value for (strict or not; only with a schema)."""

    @property
    def ok(self) -> bool:
        return self.failure is None


def scan_file(
    fd: int,
    fmt: FileFormat,
    schema: Schema | None = None,
    *,
    rules: RecordRules | None = None,
    expected_size: int | None = None,
    digest: bool = True,
    on_read: Callable[[int], None] | None = None,
    on_cleared: Callable[[], None] | None = None,
) -> ScanReport:
    """One streaming pass: sha256, record count, and the records the schema would reject (grouped).

    Reads the descriptor with positional reads (its offset is left alone), in constant memory. With
    `digest=False` no sha256 is computed (the report's `sha256` is empty): for a caller that hashed the file
    already. `on_read(offset)` is called as the reading moves past `offset` bytes from the start (the scan's
    progress). `on_cleared()` is called once, as soon as what was read rules out every failure of the whole file
    but one: the file changing while it is read, which only its end can show (see `_Clearance`).
    """
    raw = _HashingReader(fd, digest=digest, on_read=on_read)
    try:
        return _scan(raw, fmt, schema, rules, expected_size, on_cleared)
    finally:
        if raw.digest is not None:
            raw.digest.close()


class _Clearance:
    """When a scan may say early that the file is not certain to fail (`on_cleared`).

    The failures of a whole file, and what rules each out (the report's `failure`, and `key_findings` in
    operations/checks.py): a problem of the file as such (`FileFailure`: empty, binary, not UTF-8, a JSON array, no
    CSV header) comes before the first record or never; no readable record, and no record at all, end with the first
    readable one; a strict schema's key in no record, once every key has had a value; no key shared with the schema,
    once a record has one of its keys. So a file is cleared at its first readable record that leaves no strict key
    unseen and shares a key (without a schema: its first readable record). A file that changes while it is read is
    the one failure left: the PUT checks the bytes it sends against the file's sha256 (api/s3.py)."""

    __slots__ = ("_notify", "_schema_keys", "_strict")

    def __init__(self, notify: Callable[[], None], active: Schema | None) -> None:
        self._notify = notify
        self._schema_keys = frozenset(active.keys) if active is not None else None
        self._strict = active is not None and active.strict

    def check(self, unseen: set[str], known: set[str]) -> bool:
        """After a readable record: notify and return True when the file is cleared (the caller stops asking)."""
        if self._schema_keys is not None and ((self._strict and unseen) or known.isdisjoint(self._schema_keys)):
            return False
        self._notify()
        return True


def _scan(
    raw: _HashingReader,
    fmt: FileFormat,
    schema: Schema | None,
    rules: RecordRules | None,
    expected_size: int | None,
    on_cleared: Callable[[], None] | None = None,
) -> ScanReport:
    stream = io.BufferedReader(raw, READ_CHUNK)
    active = schema if schema is not None and not schema.is_empty else None
    clearance = _Clearance(on_cleared, active) if on_cleared is not None else None
    """Set until the file is cleared (`on_cleared` given and not called yet)."""
    problem_of = RecordValidator(active, rules).problem if active is not None else None
    grouper = Grouper()
    unseen = set(active.keys) if active is not None else set()
    """Schema keys no record has had a value for yet."""
    keys: dict[str, None] = {}
    """The keys the records use, in order (a dict keeps the order), while there are fewer than MAX_FILE_KEYS."""
    known: set[str] = set()
    """The same keys as a set: a record whose keys are all known (nearly every one) costs one subset test."""
    count = rejected = parsed = 0
    first_unreadable: tuple[int, str] | None = None
    failure: str | None = None
    problem: tuple[str | None, str] | None
    try:
        records = iter_records(
            stream,
            fmt,
            header_keys=active.keys if active is not None else None,
            exact_keys=checked_exact_keys_of(active) if active is not None else (),
        )
        for rec in records:
            count += 1
            value = rec.value
            if value is None:
                problem = (RAW_FIELD, rec.raw_error or "Unreadable record")
                if first_unreadable is None:
                    first_unreadable = (rec.line, problem[1])
            elif problem_of is None:
                parsed += 1
                if clearance is not None and clearance.check(unseen, known):
                    clearance = None
                continue
            else:
                parsed += 1
                if not value.keys() <= known and len(keys) < MAX_FILE_KEYS:
                    keys.update(dict.fromkeys(value))
                    known.update(value)
                if unseen:
                    unseen = {k for k in unseen if value.get(k) is None}
                if clearance is not None and clearance.check(unseen, known):
                    clearance = None
                problem = problem_of(value)
                if problem is None:
                    continue
            rejected += 1
            grouper.add(problem[0], problem[1], rec.index, rec.line)
    except FileFailure as exc:
        failure = exc.reason
    stopped_early = failure is not None and raw.digest is None  # nothing to hash: the rest need not be read
    while not stopped_early and stream.read(READ_CHUNK):
        pass
    if expected_size is not None and raw.hashed != expected_size and not stopped_early:
        failure = "the file changed while it was being read: try again once it is stable"
    if failure is None and count and not parsed and first_unreadable is not None:
        failure = unreadable_file(fmt, count, *first_unreadable)
    missing: list[str] = []
    if failure is None and active is not None and active.strict and count:
        missing = [k for k in active.keys if k in unseen]
        if missing:
            failure = (
                f"no record has the field{'s' if len(missing) > 1 else ''} {', '.join(missing[:10])}, which the "
                "strict schema requires: every record would be rejected. Add the column/key to the file, or make "
                "the schema non-strict with set_schema"
            )
    if failure is None and count == 0:
        failure = "the file has no records: a header or blank lines only"
    return ScanReport(
        sha256=raw.digest.hexdigest() if raw.digest is not None else "",
        size=raw.hashed,
        format=fmt,
        record_count=count,
        failure=failure,
        groups=grouper.groups(),
        rejected=rejected,
        missing_everywhere=missing,
        parsed=parsed,
        file_keys=list(keys),
        missing_keys=[k for k in active.keys if k in unseen] if active is not None and parsed else [],
    )


@dataclass(frozen=True, slots=True)
class ScanInput:
    """A scan run beside a PUT (`background_scan.py`): the open descriptor, its format, the dataset's schema, and
    the size the file must keep."""

    fd: int
    fmt: FileFormat
    schema: Schema | None
    expected_size: int


def scan_without_hash(
    given: ScanInput,
    on_read: Callable[[int], None] | None = None,
    on_cleared: Callable[[], None] | None = None,
) -> ScanReport:
    """`scan_file` for a file hashed already (the report's `sha256` is empty), with every record rule, in a
    worker thread or in the scan's child process alike."""
    return scan_file(
        given.fd,
        given.fmt,
        given.schema,
        rules=RecordRules(),
        expected_size=given.expected_size,
        digest=False,
        on_read=on_read,
        on_cleared=on_cleared,
    )


def unreadable_file(fmt: FileFormat, count: int, line: int, reason: str) -> str:
    """Why a file none of whose records can be read cannot be imported (the real problem, not a missing field)."""
    if fmt == "jsonl":
        return (
            f"the file is not JSON Lines: none of its {count:,} non-blank lines is a JSON object (line {line}: "
            f'{reason}). JSON Lines holds one JSON object per line, such as {{"review": "Great"}}'
        )
    return f"no row of the CSV can be read (line {line}: {reason}): check that it is a comma-separated CSV file"


def file_sha256(fd: int) -> str:
    """The sha256 of a whole file, read through its descriptor with positional reads (constant memory)."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := _pread(fd, READ_CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()
