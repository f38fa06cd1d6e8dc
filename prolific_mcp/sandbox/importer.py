"""Import processing, schema migrations and append-datapoints: the record-level work, on the shared rules.

Every record decision goes through `prolific_mcp.records` (the same rules as the client's pre-flight):
`iter_records` reads the file streaming, `RecordValidator` accepts or rejects each record (the first problem,
in schema field order), and a record's identity for duplicate detection is `record_digest` of its normalised
form (computed here from the same canonical bytes that are stored; a test pins the two together), kept in the
dataset's index by `identities`.

Imports run in a worker thread with their own SQLite connection and commit in chunks. Each commit stores the
chunk's new datapoints (one segment) together with the import's progress counters, so an import interrupted by
a stop resumes from its last commit without counting anything twice. `processed_offset` is the number of
records processed so far (accepted or rejected), i.e. the 0-based index of the next record to process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import sqlite3
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, cast

import orjson

from prolific_mcp.records import (
    RAW_FIELD,
    FileFailure,
    RawRecord,
    RecordRules,
    RecordValidator,
    Schema,
    format_from_filename,
    iter_records,
)
from prolific_mcp.records.formats import exact_loads
from prolific_mcp.records.rules import canonical_bytes, checker_for, exact_keys_of
from prolific_mcp.sandbox import identities
from prolific_mcp.sandbox.config import MAX_APPEND_RECORDS, MAX_ERRORS, Pace
from prolific_mcp.sandbox.rows import JobError, StoredUpload
from prolific_mcp.sandbox.store import Db, Store
from prolific_mcp.sandbox.traffic import ApiTraffic

log = logging.getLogger("prolific_mcp.sandbox.importer")

INSERT_SEGMENT: Final = "INSERT INTO segments (dataset_pk, count, data) VALUES (?, ?, ?)"
INSERT_ERROR: Final = "INSERT INTO job_errors (job_id, n, record_index, field, reason) VALUES (?, ?, ?, ?, ?)"
SEGMENT_BYTES: Final = 8 * 1024 * 1024
"""A chunk is committed once its new datapoints reach this size, whatever the record count."""
COMMIT_SECONDS: Final = 0.5
"""An import commits its progress at most this often (and at its end)."""
BACKGROUND_NICENESS: Final = 10
"""The CPU niceness of the thread that runs an import or a migration (Linux only, where it is per thread): on a
busy machine the API's requests, and the other processes sharing the sandbox, come first
(docs/performance.md, goal 9)."""
V3_SEGMENT_ROWS: Final = 5000
V3_GROUPING_COLUMN: Final = "META_TASK_GROUP_ID"
PENDING_SCHEMA_REASON: Final = (
    "the dataset has no schema yet: set one (PATCH the dataset with a schema that has fields) and this import "
    "is processed"
)
_SORT_KEYS: Final = orjson.OPT_SORT_KEYS


def canonical(normalised: dict[str, object]) -> tuple[bytes, bytes]:
    """(stored bytes, identity digest) of a normalised record; the digest equals `record_digest(normalised)`."""
    data = canonical_bytes(normalised)  # integers beyond 64 bits stay exact
    return data, identities.line_digest(data)


@dataclass(frozen=True, slots=True)
class WorkResult:
    """How a worker run ended: `interrupted` by a stop (resume later), or done with an optional `failure`."""

    interrupted: bool = False
    failure: str | None = None


class AppendError(Exception):
    """An append request that cannot be processed at all (400); the message says why."""


def store_records(
    c: sqlite3.Connection,
    dataset_pk: int,
    digests: list[bytes],
    data: list[bytes],
    traffic: ApiTraffic | None = None,
) -> int:
    """Store the records that are new to the dataset, in order, as one segment; returns how many were new.

    `digests[i]` is the identity of `data[i]`. A record the dataset already has (or that equals an earlier one of
    the list) is a duplicate: counted by the caller, not stored. Call inside a transaction. With `traffic` (an
    import's worker), the worker steps aside for the API's requests while it indexes the records.
    """
    if not data:
        return 0
    c.execute("SAVEPOINT store_records")
    segment = _insert_segment(c, dataset_pk, data)
    if identities.add_if_all_new(c, dataset_pk, segment, digests, traffic):
        c.execute("RELEASE store_records")
        return len(data)
    # Some key was taken: learn exactly which records are new (only chunks with a duplicate pay for this).
    c.execute("ROLLBACK TO store_records")
    verdict = identities.sort_out(c, dataset_pk, digests)
    kept = [line for line, new in zip(data, verdict.new, strict=True) if new]
    if kept:
        identities.index(c, dataset_pk, _insert_segment(c, dataset_pk, kept), verdict)
    c.execute("RELEASE store_records")
    return len(kept)


def _insert_segment(c: sqlite3.Connection, dataset_pk: int, data: list[bytes]) -> int:
    segment = c.execute(INSERT_SEGMENT, (dataset_pk, len(data), b"\n".join(data))).lastrowid
    assert segment is not None
    return segment


def in_background() -> None:
    """Lower the calling thread's CPU priority to BACKGROUND_NICENESS (Linux; elsewhere nothing: there
    `setpriority` would name a process, not this thread). The worker threads that call it run record work only."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        thread = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, thread) < BACKGROUND_NICENESS:
            os.setpriority(os.PRIO_PROCESS, thread, BACKGROUND_NICENESS)


def process_upload(
    store: Store,
    upload_pk: int,
    rules: RecordRules,
    pace: Pace,
    chunk: int,
    stop: threading.Event,
    traffic: ApiTraffic | None = None,
) -> WorkResult:
    """Process one upload (V4 import or V3 file) that is in `processing`; runs in a worker thread, stepping aside
    between records while `traffic` has API requests in flight."""
    in_background()
    traffic = traffic or ApiTraffic()
    db = store.connect(cache_mib=256)
    try:
        up = db.upload_by_pk(upload_pk)
        dataset = db.dataset_by_pk(up.dataset_pk)
        path = store.object_path(up.id)
        if not path.is_file():
            return WorkResult(failure="the uploaded file is missing from the sandbox's store: upload it again")
        if up.kind == "v3":
            return _process_v3(db, up, path, stop, traffic)
        if dataset.schema is None:
            return WorkResult(failure="the dataset has no schema")
        schema = Schema.from_dict(dataset.schema)
        return _ImportRun(db, up, schema, rules, pace, chunk, stop, traffic).run(path)
    finally:
        db.close()


class _ImportRun:
    """One pass over a V4 import's file, from its committed progress to the end.

    Records are written to SQLite every `chunk` records (or SEGMENT_BYTES of data) and committed, with the
    progress counters, every COMMIT_SECONDS: fewer, larger commits keep the uniqueness index from being
    rewritten to the log again and again on big imports.
    """

    def __init__(
        self,
        db: Db,
        up: StoredUpload,
        schema: Schema,
        rules: RecordRules,
        pace: Pace,
        chunk: int,
        stop: threading.Event,
        traffic: ApiTraffic,
    ) -> None:
        self.db = db
        self.traffic = traffic
        self.up = up
        self.schema = schema
        self.validator = RecordValidator(schema, rules)
        self.rate = pace.records_per_second
        self.chunk = max(1, chunk)
        self.stop = stop
        self.digests: list[bytes] = []
        self.data: list[bytes] = []
        self.errors: list[tuple[str, int, int, str | None, str]] = []
        self.accepted = up.accepted_seen
        self.written = up.written_count
        self.duplicates = up.duplicate_seen
        self.rejected = up.rejected_seen
        self.error_count = up.error_count
        self.uncommitted_written = 0
        self.tx_started: float | None = None

    def run(self, path: Path) -> WorkResult:
        fmt = format_from_filename(self.up.filename)
        if fmt is None:
            return WorkResult(failure=f"{self.up.filename!r} is neither .jsonl nor .csv")
        try:
            with open(path, "rb", buffering=1024 * 1024) as stream:
                try:
                    records = iter_records(
                        stream,
                        fmt,
                        header_keys=self.schema.keys if fmt == "csv" else None,
                        exact_keys=exact_keys_of(self.schema),
                    )
                    return self._consume(records)
                except FileFailure as exc:
                    self._rollback()
                    return WorkResult(failure=exc.reason)
        except BaseException:
            self._rollback()
            raise

    def _reject(self, index: int, field: str | None, reason: str) -> None:
        self.rejected += 1
        if self.error_count < MAX_ERRORS:
            self.errors.append((self.up.id, self.error_count, index, field, reason))
            self.error_count += 1

    def _consume(self, records: Iterator[RawRecord]) -> WorkResult:
        skip = self.up.processed_offset
        check = self.validator.check
        dumps = orjson.dumps
        blake2b = hashlib.blake2b
        digests_append = self.digests.append
        data_append = self.data.append
        step = self.chunk
        traffic = self.traffic
        step_aside = traffic.step_aside
        started = time.monotonic()
        if self.rate:
            step = max(1, min(step, int(self.rate / 10)))
        write_at = skip + step
        pending_bytes = 0
        done = skip
        for rec in records:
            index = rec.index
            if index < skip:
                continue
            if traffic.in_flight:
                step_aside()
            done = index + 1
            value = rec.value
            if value is None:
                self._reject(index, RAW_FIELD, rec.raw_error or "Unreadable record")
            else:
                normalised, problem = check(value)
                if problem is None:
                    try:
                        line = dumps(normalised, option=_SORT_KEYS)
                    except TypeError:  # an integer beyond 64 bits: written exactly
                        assert normalised is not None
                        line = canonical_bytes(normalised)
                    digests_append(blake2b(line, digest_size=16).digest())  # `identities.line_digest`, inlined
                    data_append(line)
                    pending_bytes += len(line)
                else:
                    self._reject(index, problem[0], problem[1])
            if done >= write_at or pending_bytes > SEGMENT_BYTES:
                self._write()
                write_at = done + step
                pending_bytes = 0
                if self.stop.is_set():
                    self._rollback()
                    return WorkResult(interrupted=True)
                if self.rate or time.monotonic() - (self.tx_started or 0.0) >= COMMIT_SECONDS:
                    self._commit(done)
                if self.rate:
                    ahead = started + (done - skip) / self.rate - time.monotonic()
                    if ahead > 0 and self.stop.wait(ahead):
                        return WorkResult(interrupted=True)
        self._write()
        self._commit(done)
        return WorkResult()

    def _write(self) -> None:
        """Write the pending datapoints and errors into the open transaction (opening one if needed)."""
        c = self.db.conn
        if self.tx_started is None:
            c.execute("BEGIN IMMEDIATE")
            self.tx_started = time.monotonic()
        written = store_records(c, self.up.dataset_pk, self.digests, self.data, self.traffic)
        if self.errors:
            c.executemany(INSERT_ERROR, self.errors)
        self.accepted += len(self.data)
        self.written += written
        self.uncommitted_written += written
        self.duplicates += len(self.data) - written
        self.digests.clear()
        self.data.clear()
        self.errors.clear()

    def _commit(self, processed: int) -> None:
        """Record the progress counters with what was written, and commit."""
        if self.tx_started is None:
            self._write()
        c = self.db.conn
        c.execute(
            "UPDATE uploads SET processed_offset = ?, accepted_seen = ?, written_count = ?, duplicate_seen = ?,"
            " rejected_seen = ?, error_count = ?, updated_at = ? WHERE pk = ?",
            (
                processed,
                self.accepted,
                self.written,
                self.duplicates,
                self.rejected,
                self.error_count,
                self.db.clock.now(),
                self.up.pk,
            ),
        )
        if self.uncommitted_written:
            c.execute(
                "UPDATE datasets SET total = total + ? WHERE pk = ?", (self.uncommitted_written, self.up.dataset_pk)
            )
        c.execute("COMMIT")
        self.tx_started = None
        self.uncommitted_written = 0

    def _rollback(self) -> None:
        """Drop what was written since the last commit (it is processed again on resume)."""
        if self.tx_started is not None:
            self.db.conn.execute("ROLLBACK")
            self.tx_started = None


def _open_v3_csv(path: Path, stack: ExitStack) -> BinaryIO:
    """The first .csv inside a V3 .zip upload."""
    if not zipfile.is_zipfile(path):
        raise FileFailure("the .zip upload is not a zip archive: upload the CSV itself as a .csv file")
    archive = stack.enter_context(zipfile.ZipFile(path))
    names = [n for n in archive.namelist() if n.lower().endswith(".csv") and not n.startswith("__MACOSX/")]
    if not names:
        raise FileFailure("the .zip holds no .csv file: put the dataset's CSV inside the archive")
    return cast(BinaryIO, stack.enter_context(archive.open(sorted(names)[0])))


def _process_v3(db: Db, up: StoredUpload, path: Path, stop: threading.Event, traffic: ApiTraffic) -> WorkResult:
    """A V3 upload replaces the dataset's datapoints with the CSV's rows (`META_` columns kept), all or nothing."""
    is_zip = up.filename.lower().endswith(".zip")
    if not is_zip and zipfile.is_zipfile(path):
        return WorkResult(failure="the .csv upload is a zip archive")
    rows = 0
    grouping = False
    with ExitStack() as stack:
        try:
            stream = _open_v3_csv(path, stack) if is_zip else stack.enter_context(open(path, "rb"))
            records = iter_records(stream, "csv")
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                db.conn.execute("DELETE FROM segments WHERE dataset_pk = ?", (up.dataset_pk,))
                batch: list[bytes] = []
                for rec in records:
                    if traffic.in_flight:
                        traffic.step_aside()
                    if rec.value is None:
                        raise FileFailure(f"row {rec.index + 1} (line {rec.line}): {rec.raw_error}")
                    if rows == 0:
                        grouping = V3_GROUPING_COLUMN in rec.value
                    batch.append(orjson.dumps(rec.value))
                    rows += 1
                    if len(batch) >= V3_SEGMENT_ROWS:
                        db.conn.execute(INSERT_SEGMENT, (up.dataset_pk, len(batch), b"\n".join(batch)))
                        batch.clear()
                        if stop.is_set():
                            db.conn.execute("ROLLBACK")
                            return WorkResult(interrupted=True)
                if batch:
                    db.conn.execute(INSERT_SEGMENT, (up.dataset_pk, len(batch), b"\n".join(batch)))
                if rows == 0:
                    raise FileFailure("the CSV has a header but no rows")
                db.conn.execute(
                    "UPDATE datasets SET total = ?, v3_filename = ?, v3_grouping = ? WHERE pk = ?",
                    (rows, up.filename, int(grouping), up.dataset_pk),
                )
                db.conn.execute(
                    "UPDATE uploads SET processed_offset = ?, accepted_seen = ?, written_count = ?, updated_at = ?"
                    " WHERE pk = ?",
                    (rows, rows, rows, db.clock.now(), up.pk),
                )
            except BaseException:
                db.conn.execute("ROLLBACK")
                raise
            db.conn.execute("COMMIT")
        except (FileFailure, zipfile.BadZipFile) as exc:
            reason = exc.reason if isinstance(exc, FileFailure) else f"the .zip file is damaged: {exc}"
            log.info("V3 upload %s failed: %s", up.id, reason)
            return WorkResult(failure=reason)
    return WorkResult()


_LONG_NUMBER: Final = re.compile(rb"\d{19}")
"""A run of digits long enough to be an integer beyond 64 bits (or part of a string: then only slower)."""


def run_migration(
    store: Store, migration_pk: int, rules: RecordRules, stop: threading.Event, traffic: ApiTraffic | None = None
) -> WorkResult:
    """Re-normalise every datapoint of the dataset against the migration's schema; runs in a worker thread.

    Keys not in the new schema are dropped; a value that no longer validates is set to null (left out) and
    counted: `failed_count` is the number of datapoints with at least one value nulled, `errors` lists each
    nulled value (`record_index` = the datapoint's 0-based position in the dataset), at most 1,000. No
    datapoint is removed; identities are recomputed (datapoints that became identical keep their rows and share
    one identity). Progress is committed per segment, so an interrupted migration resumes.
    """
    in_background()
    traffic = traffic or ApiTraffic()
    db = store.connect()
    try:
        job = db.migration_by_pk(migration_pk)
        ds_pk = job.dataset_pk
        schema = Schema.from_dict(orjson.loads(job.schema))
        checks = [(f.key, checker_for(f.type, rules)) for f in schema.fields]
        progress, position = job.progress, job.position
        reprocessed, failed, error_count = job.reprocessed_count, job.failed_count, job.error_count
        if progress == 0:
            with db.transaction() as c:
                identities.forget(c, ds_pk)
        while True:
            row = db.conn.execute(
                "SELECT id, data FROM segments WHERE dataset_pk = ? AND id > ? ORDER BY id LIMIT 1", (ds_pk, progress)
            ).fetchone()
            if row is None:
                return WorkResult()
            digests: list[bytes] = []
            lines: list[bytes] = []
            errors: list[tuple[str, int, int, str | None, str]] = []
            for raw in bytes(row["data"]).split(b"\n"):
                if traffic.in_flight:
                    traffic.step_aside()
                # Stored records keep integers beyond 64 bits exact; orjson would read them back as floats.
                record = cast(dict[str, object], exact_loads(raw) if _LONG_NUMBER.search(raw) else orjson.loads(raw))
                normalised: dict[str, object] = {}
                nulled = False
                for key, check in checks:
                    value = record.get(key)
                    if value is None:
                        continue
                    problem = check(value)
                    if problem is not None:
                        nulled = True
                        if error_count < MAX_ERRORS:
                            errors.append((job.id, error_count, position, key, f"{problem}; the value was set to null"))
                            error_count += 1
                        continue
                    normalised[key] = value
                line, digest = canonical(normalised)
                lines.append(line)
                digests.append(digest)
                position += 1
                reprocessed += 1
                failed += nulled
            progress = row["id"]
            with db.transaction() as c:
                c.execute("UPDATE segments SET data = ? WHERE id = ?", (b"\n".join(lines), progress))
                identities.index_segment(c, ds_pk, progress, digests, traffic)
                if errors:
                    c.executemany(INSERT_ERROR, errors)
                c.execute(
                    "UPDATE migrations SET progress = ?, position = ?, reprocessed_count = ?, failed_count = ?,"
                    " error_count = ?, updated_at = ? WHERE pk = ?",
                    (progress, position, reprocessed, failed, error_count, db.clock.now(), migration_pk),
                )
            if stop.is_set():
                return WorkResult(interrupted=True)
    finally:
        db.close()


def append_records(db: Db, dataset_pk: int, body: bytes, rules: RecordRules) -> dict[str, Any]:
    """Validate and store up to 1,000 JSONL records at once (docs/prolific-api.md); runs on the db thread."""
    dataset = db.dataset_by_pk(dataset_pk)
    assert dataset.schema is not None
    validator = RecordValidator(Schema.from_dict(dataset.schema), rules)
    try:
        records = _take_records(io.BytesIO(body))
    except FileFailure as exc:
        raise AppendError(f"the body is not JSON Lines records: {exc.reason}") from None
    digests: list[bytes] = []
    lines: list[bytes] = []
    errors: list[JobError] = []
    rejected = 0
    for rec in records:
        if rec.value is None:
            problem: tuple[str | None, str] = (RAW_FIELD, rec.raw_error or "Unreadable record")
        else:
            normalised, found = validator.check(rec.value)
            if found is None:
                assert normalised is not None
                line, digest = canonical(normalised)
                lines.append(line)
                digests.append(digest)
                continue
            problem = found
        rejected += 1
        if len(errors) < MAX_ERRORS:
            errors.append(JobError(rec.index, problem[0], problem[1]))
    with db.transaction() as c:
        written = store_records(c, dataset_pk, digests, lines)
        if written:
            c.execute("UPDATE datasets SET total = total + ? WHERE pk = ?", (written, dataset_pk))
    return {
        "accepted_count": len(lines),
        "rejected_count": rejected,
        "duplicate_count": len(lines) - written,
        "errors": [e.to_dict() for e in errors],
    }


def _take_records(stream: IO[bytes]) -> list[RawRecord]:
    out: list[RawRecord] = []
    for rec in iter_records(cast(BinaryIO, stream), "jsonl"):
        out.append(rec)
        if len(out) > MAX_APPEND_RECORDS:
            raise AppendError(
                f"an append takes at most {MAX_APPEND_RECORDS:,} records; this body has more. Split it into "
                f"requests of {MAX_APPEND_RECORDS:,} records, or upload a file for larger additions"
            )
    return out
