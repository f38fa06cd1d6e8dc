"""The sandbox's state: one SQLite database (WAL, busy timeout) in the state folder, plus the uploaded objects.

Everything that must survive a restart lives here: the seeded user and workspace, datasets and their schemas,
import jobs with their committed progress, migrations, datapoints, batches, and the signing secret of the fake S3.

Datapoints are stored in `segments`: one row per committed chunk, holding the chunk's records in order as
canonical JSON lines (the dataset's order is segment id, then line). Duplicate detection (docs/prolific-api.md) uses
`record_keys`, one small integer entry per distinct record of a V4 dataset (`identities.py`), so that the per-record
cost of an import stays one index insert.

`Db` wraps one connection and is used by one thread. `Store` owns the connection of the "db thread" that request
handlers use (one worker thread, so handlers never block the event loop on SQLite); import workers open their
own `Db` with `Store.connect()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from prolific_mcp.sandbox import identities
from prolific_mcp.sandbox.clock import Clock
from prolific_mcp.sandbox.rows import (
    SCHEMA_SQL,
    DatasetRow,
    JobError,
    MigrationRow,
    NextJob,
    StoredUpload,
)

T = TypeVar("T")

DB_FILENAME: Final = "sandbox.sqlite3"
DEFAULT_WORKSPACE_DESCRIPTION: Final = "The local sandbox's workspace (typed datasets: V4)."
LEGACY_WORKSPACE_TITLE: Final = "Sandbox workspace without typed datasets"
LEGACY_WORKSPACE_DESCRIPTION: Final = (
    "A workspace without the typed-datasets feature: a dataset created here is V3 (legacy CSV), and a schema is "
    "refused."
)
OBJECTS_DIRNAME: Final = "objects"
BUSY_TIMEOUT_MS: Final = 30_000
PAGE_SIZE: Final = 16 * 1024
WAL_CHECKPOINT_PAGES: Final = 4096
"""Checkpoint the write-ahead log every 64 MiB (4,096 pages of 16 KiB)."""


def new_uuid() -> str:
    """A fresh UUID string (dataset, import, migration and batch ids)."""
    return str(uuid.uuid4())


def new_hex_id() -> str:
    """A fresh 24-hex id, the shape of Prolific's workspace and user ids."""
    return secrets.token_hex(12)


def connect(path: Path, *, cache_mib: int = 64) -> sqlite3.Connection:
    """A connection with the sandbox's pragmas: WAL, a busy timeout, NORMAL sync (safe with WAL).

    A new database gets 16 KiB pages (measured faster for bulk imports than the default 4 KiB).
    """
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=True)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_CHECKPOINT_PAGES * PAGE_SIZE}")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute(f"PRAGMA cache_size = -{cache_mib * 1024}")
    return conn


class Db:
    """Typed access to the sandbox database through one connection (one thread)."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # set-up ---------------------------------------------------------------------------------------------------

    def initialise(self) -> None:
        """Create the tables and seed the user, the two workspaces and the signing secret on first use.

        The first workspace (the default) has typed datasets; the second has not, so a dataset created there is V3
        (docs/prolific-api.md, What Prolific's CLI and OpenAPI add: 6). A state folder from before the second
        workspace existed gets it on its next start. One from before `record_keys` has its V4 datasets indexed
        afresh from their stored records, and the 16-byte `identities` index that `record_keys` replaces dropped.
        """
        self.conn.executescript(SCHEMA_SQL)
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'identities'").fetchone():
                for (dataset_pk,) in c.execute("SELECT pk FROM datasets WHERE version = 4").fetchall():
                    identities.rebuild(c, dataset_pk)
                c.execute("DROP TABLE identities")
            columns = {row[1] for row in c.execute("PRAGMA table_info(workspaces)")}
            if "typed" not in columns:
                c.execute("ALTER TABLE workspaces ADD COLUMN typed INTEGER NOT NULL DEFAULT 1")
            now = self.clock.now()
            user_id = self._meta(c, "user_id")
            if user_id is None:
                user_id = new_hex_id()
                c.execute(
                    "INSERT INTO users (id, first_name, last_name, email, created_at) VALUES (?, ?, ?, ?, ?)",
                    (user_id, "Sandbox", "Researcher", "researcher@sandbox.invalid", now),
                )
                c.execute(
                    "INSERT INTO workspaces (id, title, description, owner, created_at, typed)"
                    " VALUES (?, ?, ?, ?, ?, 1)",
                    (new_hex_id(), "Sandbox workspace", DEFAULT_WORKSPACE_DESCRIPTION, user_id, now),
                )
                c.execute("INSERT INTO meta (key, value) VALUES ('user_id', ?)", (user_id,))
                c.execute("INSERT INTO meta (key, value) VALUES ('s3_secret', ?)", (secrets.token_hex(32),))
                c.execute("INSERT INTO meta (key, value) VALUES ('s3_access_key', ?)", (_access_key_id(),))
            if self._meta(c, "legacy_workspace_id") is None:
                legacy_id = new_hex_id()
                c.execute(
                    "INSERT INTO workspaces (id, title, description, owner, created_at, typed)"
                    " VALUES (?, ?, ?, ?, ?, 0)",
                    (legacy_id, LEGACY_WORKSPACE_TITLE, LEGACY_WORKSPACE_DESCRIPTION, user_id, now),
                )
                c.execute("INSERT INTO meta (key, value) VALUES ('legacy_workspace_id', ?)", (legacy_id,))

    @staticmethod
    def _meta(c: sqlite3.Connection, key: str) -> str | None:
        row = c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta(self, key: str) -> str:
        value = self._meta(self.conn, key)
        if value is None:
            raise KeyError(f"the sandbox database has no {key!r}: is the state folder from another program?")
        return value

    # users and workspaces -------------------------------------------------------------------------------------

    def user(self) -> dict[str, Any]:
        row = self.conn.execute("SELECT * FROM users WHERE id = ?", (self.meta("user_id"),)).fetchone()
        return dict(row)

    def default_workspace_id(self) -> str:
        """The seeded workspace with typed datasets (the first one)."""
        row = self.conn.execute("SELECT id FROM workspaces WHERE typed = 1 ORDER BY pk LIMIT 1").fetchone()
        return str(row[0])

    def legacy_workspace_id(self) -> str:
        """The seeded workspace without typed datasets, where every dataset is V3."""
        return self.meta("legacy_workspace_id")

    def workspaces(self, limit: int | None, offset: int) -> tuple[list[dict[str, Any]], int]:
        """One page of the workspaces (the default first) and how many there are."""
        count = self.conn.execute("SELECT COUNT(*) FROM workspaces").fetchone()[0]
        rows = self.conn.execute(
            "SELECT * FROM workspaces ORDER BY pk LIMIT ? OFFSET ?", (-1 if limit is None else limit, offset)
        ).fetchall()
        return [dict(r) for r in rows], int(count)

    def workspace(self, workspace_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM workspaces WHERE id = ?", (workspace_id,)).fetchone()
        return None if row is None else dict(row)

    def create_workspace(self, title: str, description: str = "", *, typed: bool = True) -> dict[str, Any]:
        """A new workspace, with typed (V4) datasets unless `typed=False`."""
        workspace_id = new_hex_id()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO workspaces (id, title, description, owner, created_at, typed) VALUES (?, ?, ?, ?, ?, ?)",
                (workspace_id, title, description, self.meta("user_id"), self.clock.now(), int(typed)),
            )
        found = self.workspace(workspace_id)
        assert found is not None
        return found

    # datasets ---------------------------------------------------------------------------------------------------

    def create_dataset(self, name: str, workspace_id: str, version: int, schema: dict[str, Any] | None) -> DatasetRow:
        """A new dataset: V4 (`schema` None, or one with fields) or V3 (no schema); the caller decides which from the
        workspace. A schema without fields is stored as no schema (docs/prolific-api.md, Where the docs are silent)."""
        dataset_id = new_uuid()
        if version == 3 or (schema is not None and not schema.get("fields")):
            schema = None
        with self.transaction() as c:
            c.execute(
                "INSERT INTO datasets (id, name, workspace_id, created_by, created_at, version, schema,"
                " schema_revision, v3_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    dataset_id,
                    name,
                    workspace_id,
                    self.meta("user_id"),
                    self.clock.now(),
                    version,
                    None if schema is None else orjson.dumps(schema).decode(),
                    0 if schema is None else 1,
                    "UNINITIALISED" if version == 3 else None,
                ),
            )
        found = self.dataset(dataset_id)
        assert found is not None
        return found

    def dataset(self, dataset_id: str) -> DatasetRow | None:
        row = self.conn.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        return None if row is None else DatasetRow.from_row(row)

    def dataset_by_pk(self, pk: int) -> DatasetRow:
        row = self.conn.execute("SELECT * FROM datasets WHERE pk = ?", (pk,)).fetchone()
        return DatasetRow.from_row(row)

    def datasets_by_id(self, ids: Sequence[str]) -> dict[str, DatasetRow]:
        out: dict[str, DatasetRow] = {}
        for dataset_id in ids:
            found = self.dataset(dataset_id)
            if found is not None:
                out[dataset_id] = found
        return out

    def has_active_work(self, dataset_pk: int) -> bool:
        """True while an import is queued or processing, or a migration runs, on the dataset."""
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM uploads WHERE dataset_pk = ? AND status IN ('queued', 'processing'))"
            " OR EXISTS (SELECT 1 FROM migrations WHERE dataset_pk = ? AND status = 'processing')",
            (dataset_pk, dataset_pk),
        ).fetchone()
        return bool(row[0])

    def running_migration(self, dataset_pk: int) -> MigrationRow | None:
        row = self.conn.execute(
            "SELECT * FROM migrations WHERE dataset_pk = ? AND status = 'processing' ORDER BY pk LIMIT 1",
            (dataset_pk,),
        ).fetchone()
        return None if row is None else MigrationRow.from_row(row)

    def set_first_schema(self, dataset_pk: int, schema: dict[str, Any]) -> list[str]:
        """Set a schema on a dataset that had none; release its parked imports. Returns the released ids.

        Released imports go back to `queued`, in their original arrival order, behind the work already queued.
        """
        now = self.clock.now()
        fields = bool(schema.get("fields"))
        with self.transaction() as c:
            c.execute(
                "UPDATE datasets SET schema = ?, schema_revision = schema_revision + 1 WHERE pk = ?",
                (orjson.dumps(schema).decode() if fields else None, dataset_pk),
            )
            if not fields:
                return []
            parked = c.execute(
                "SELECT pk, id FROM uploads WHERE dataset_pk = ? AND status = 'pending_schema' ORDER BY arrived_at, pk",
                (dataset_pk,),
            ).fetchall()
            for i, row in enumerate(parked):
                c.execute(
                    "UPDATE uploads SET status = 'queued', reason = NULL, arrived_at = ?, updated_at = ? WHERE pk = ?",
                    (now + i * 1e-6, now, row[0]),
                )
            return [str(row[1]) for row in parked]

    def change_schema(self, dataset_pk: int, schema: dict[str, Any]) -> MigrationRow:
        """Replace an existing schema: bump the revision and queue a migration job."""
        now = self.clock.now()
        text = orjson.dumps(schema).decode()
        job_id = new_uuid()
        with self.transaction() as c:
            c.execute(
                "UPDATE datasets SET schema = ?, schema_revision = schema_revision + 1 WHERE pk = ?",
                (text, dataset_pk),
            )
            revision = c.execute("SELECT schema_revision FROM datasets WHERE pk = ?", (dataset_pk,)).fetchone()[0]
            c.execute(
                "INSERT INTO migrations (id, dataset_pk, schema_revision, schema, status, created_at, updated_at,"
                " arrived_at) VALUES (?, ?, ?, ?, 'processing', ?, ?, ?)",
                (job_id, dataset_pk, revision, text, now, now, now),
            )
        found = self.migration(job_id)
        assert found is not None
        return found

    # uploads ----------------------------------------------------------------------------------------------------

    def create_upload(self, dataset: DatasetRow, filename: str, content_type: str, expires_at: float) -> StoredUpload:
        """A new upload in `uninitialised`, with its own object key (one per call, as on Prolific)."""
        upload_id = new_uuid()
        kind = "import" if dataset.version == 4 else "v3"
        folder = "imports" if kind == "import" else "uploads"
        file_key = f"datasets/{dataset.id}/{folder}/{upload_id}/{filename}"
        now = self.clock.now()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO uploads (id, dataset_pk, kind, filename, file_key, content_type, status, created_at,"
                " updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, 'uninitialised', ?, ?, ?)",
                (upload_id, dataset.pk, kind, filename, file_key, content_type, now, now, expires_at),
            )
        found = self.upload(upload_id)
        assert found is not None
        return found

    def upload(self, upload_id: str) -> StoredUpload | None:
        row = self.conn.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return None if row is None else StoredUpload.from_row(row)

    def upload_by_pk(self, pk: int) -> StoredUpload:
        return StoredUpload.from_row(self.conn.execute("SELECT * FROM uploads WHERE pk = ?", (pk,)).fetchone())

    def upload_by_key(self, file_key: str) -> StoredUpload | None:
        row = self.conn.execute("SELECT * FROM uploads WHERE file_key = ?", (file_key,)).fetchone()
        return None if row is None else StoredUpload.from_row(row)

    def imports_of(self, dataset_pk: int) -> list[StoredUpload]:
        """The dataset's V4 import jobs, most recent first."""
        rows = self.conn.execute(
            "SELECT * FROM uploads WHERE dataset_pk = ? AND kind = 'import' ORDER BY pk DESC", (dataset_pk,)
        ).fetchall()
        return [StoredUpload.from_row(r) for r in rows]

    def errors_of(self, job_id: str) -> list[JobError]:
        rows = self.conn.execute(
            "SELECT record_index, field, reason FROM job_errors WHERE job_id = ? ORDER BY n", (job_id,)
        ).fetchall()
        return [JobError(r[0], r[1], r[2]) for r in rows]

    def errors_of_many(self, job_ids: Sequence[str]) -> dict[str, list[JobError]]:
        out: dict[str, list[JobError]] = {job_id: [] for job_id in job_ids}
        for job_id in job_ids:
            out[job_id] = self.errors_of(job_id)
        return out

    def object_stored(self, upload_pk: int, size: int, etag: str) -> bool:
        """Record a completed PUT. An `uninitialised` upload becomes `queued`; returns True if it did.

        A PUT to an upload already queued only replaces the object (S3 semantics): the import is not duplicated.
        """
        now = self.clock.now()
        with self.transaction() as c:
            row = c.execute("SELECT status, kind, dataset_pk FROM uploads WHERE pk = ?", (upload_pk,)).fetchone()
            c.execute(
                "UPDATE uploads SET object_size = ?, etag = ?, updated_at = ? WHERE pk = ?",
                (size, etag, now, upload_pk),
            )
            if row["status"] != "uninitialised":
                return False
            c.execute(
                "UPDATE uploads SET status = 'queued', arrived_at = ?, updated_at = ? WHERE pk = ?",
                (now, now, upload_pk),
            )
            if row["kind"] == "v3":
                c.execute("UPDATE datasets SET v3_status = 'PROCESSING' WHERE pk = ?", (row["dataset_pk"],))
            return True

    def next_job(self, dataset_pk: int) -> NextJob | None:
        """The dataset's next job in arrival order: a queued/processing upload or a pending migration."""
        row = self.conn.execute(
            "SELECT kind, pk FROM ("
            " SELECT 'upload' AS kind, pk, arrived_at FROM uploads"
            "  WHERE dataset_pk = ? AND status IN ('queued', 'processing')"
            " UNION ALL"
            " SELECT 'migration' AS kind, pk, arrived_at FROM migrations"
            "  WHERE dataset_pk = ? AND status = 'processing'"
            ") ORDER BY arrived_at, kind DESC, pk LIMIT 1",
            (dataset_pk, dataset_pk),
        ).fetchone()
        return None if row is None else NextJob(row[0], row[1])

    def start_upload(self, upload_pk: int) -> StoredUpload:
        """Move a queued upload to `processing` (a resumed one keeps its start time and progress)."""
        now = self.clock.now()
        with self.transaction() as c:
            c.execute(
                "UPDATE uploads SET status = 'processing', updated_at = ?,"
                " processing_started_at = COALESCE(processing_started_at, ?) WHERE pk = ?",
                (now, now, upload_pk),
            )
        return self.upload_by_pk(upload_pk)

    def park_upload(self, upload_pk: int, reason: str) -> None:
        """Park an import in `pending_schema` until the dataset gets its first schema."""
        with self.transaction() as c:
            c.execute(
                "UPDATE uploads SET status = 'pending_schema', reason = ?, updated_at = ? WHERE pk = ?",
                (reason, self.clock.now(), upload_pk),
            )

    def finish_upload(self, upload_pk: int, failure: str | None) -> StoredUpload:
        """Write the terminal status of an import from its committed counters.

        `complete`: nothing rejected; `partial`: some accepted, some rejected; `failed`: `failure` (the file as
        a whole), no records at all, or every record rejected (the counts and errors are kept).
        """
        up = self.upload_by_pk(upload_pk)
        accepted, rejected = up.accepted_seen, up.rejected_seen
        if failure is not None:
            status, reason = "failed", failure
        elif accepted + rejected == 0:
            status, reason = "failed", "the file has no records: it has a header or blank lines only"
        elif accepted == 0:
            status = "failed"
            reason = f"all {rejected:,} records were rejected; see errors for the first problem of each"
        elif rejected:
            status, reason = "partial", None
        else:
            status, reason = "complete", None
        now = self.clock.now()
        with self.transaction() as c:
            c.execute(
                "UPDATE uploads SET status = ?, reason = ?, updated_at = ? WHERE pk = ?",
                (status, reason, now, upload_pk),
            )
            if up.kind == "v3":
                v3_status = "ERROR" if status == "failed" else "READY"
                c.execute("UPDATE datasets SET v3_status = ? WHERE pk = ?", (v3_status, up.dataset_pk))
        return self.upload_by_pk(upload_pk)

    # migrations -------------------------------------------------------------------------------------------------

    def migration(self, job_id: str) -> MigrationRow | None:
        row = self.conn.execute("SELECT * FROM migrations WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else MigrationRow.from_row(row)

    def migration_by_pk(self, pk: int) -> MigrationRow:
        return MigrationRow.from_row(self.conn.execute("SELECT * FROM migrations WHERE pk = ?", (pk,)).fetchone())

    def start_migration(self, pk: int) -> MigrationRow:
        now = self.clock.now()
        with self.transaction() as c:
            c.execute(
                "UPDATE migrations SET started_at = COALESCE(started_at, ?), updated_at = ? WHERE pk = ?",
                (now, now, pk),
            )
        return self.migration_by_pk(pk)

    def finish_migration(self, pk: int, failure: str | None) -> MigrationRow:
        """`complete` if no value had to be nulled, `partial` if some were, `failed` with `failure`."""
        job = self.migration_by_pk(pk)
        if failure is not None:
            status = "failed"
        elif job.failed_count:
            status = "partial"
        else:
            status = "complete"
        with self.transaction() as c:
            c.execute(
                "UPDATE migrations SET status = ?, reason = ?, updated_at = ? WHERE pk = ?",
                (status, failure, self.clock.now(), pk),
            )
        return self.migration_by_pk(pk)

    # batches ----------------------------------------------------------------------------------------------------

    def create_batch(self, workspace_id: str, dataset_id: str | None, name: str, status: str) -> dict[str, Any]:
        batch_id = new_uuid()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO batches (id, name, workspace_id, dataset_id, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (batch_id, name, workspace_id, dataset_id, status, self.clock.now()),
            )
        return dict(self.conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone())

    def batches(self, workspace_id: str, limit: int | None = None, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """One page of the workspace's batches, oldest first, and how many there are."""
        count = self.conn.execute("SELECT COUNT(*) FROM batches WHERE workspace_id = ?", (workspace_id,)).fetchone()[0]
        rows = self.conn.execute(
            "SELECT * FROM batches WHERE workspace_id = ? ORDER BY pk LIMIT ? OFFSET ?",
            (workspace_id, -1 if limit is None else limit, offset),
        ).fetchall()
        return [dict(r) for r in rows], int(count)

    # recovery ---------------------------------------------------------------------------------------------------

    def recover(self, objects_dir: Path) -> list[int]:
        """After a restart: queue uploads whose PUT completed but was not recorded; list datasets with work.

        An upload counts as PUT when its object file exists (it is renamed into place only once complete).
        Interrupted imports stay `processing` and resume from their committed progress.
        """
        pending = self.conn.execute("SELECT pk, id, kind, dataset_pk FROM uploads WHERE status = 'uninitialised'")
        found: list[tuple[float, int, int, str, int]] = []
        for row in pending.fetchall():
            path = objects_dir / f"{row['id']}.bin"
            if path.is_file():
                stat = path.stat()
                found.append((stat.st_mtime, row["pk"], stat.st_size, row["kind"], row["dataset_pk"]))
        if found:
            with self.transaction() as c:
                for mtime, pk, size, kind, dataset_pk in sorted(found):
                    c.execute(
                        "UPDATE uploads SET status = 'queued', arrived_at = ?, object_size = ?, updated_at = ?"
                        " WHERE pk = ?",
                        (mtime, size, self.clock.now(), pk),
                    )
                    if kind == "v3":
                        c.execute("UPDATE datasets SET v3_status = 'PROCESSING' WHERE pk = ?", (dataset_pk,))
        rows = self.conn.execute(
            "SELECT dataset_pk FROM uploads WHERE status IN ('queued', 'processing')"
            " UNION SELECT dataset_pk FROM migrations WHERE status = 'processing'"
        ).fetchall()
        return sorted(int(r[0]) for r in rows)


def _access_key_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "ASIA" + "".join(secrets.choice(alphabet) for _ in range(16))


class Store:
    """The state folder: the database, the object files, and the db thread request handlers use."""

    def __init__(self, state_dir: Path, clock: Clock) -> None:
        self.state_dir = state_dir
        self.clock = clock
        self.db_path = state_dir / DB_FILENAME
        self.objects_dir = state_dir / OBJECTS_DIRNAME
        state_dir.mkdir(parents=True, exist_ok=True)
        self.objects_dir.mkdir(exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-db")
        self._db: Db | None = None
        try:
            self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            raise

    def _open(self) -> None:
        db = Db(connect(self.db_path), self.clock)
        db.initialise()
        self._db = db

    def connect(self, *, cache_mib: int = 64) -> Db:
        """A new `Db` on its own connection, for the calling thread only (import workers)."""
        return Db(connect(self.db_path, cache_mib=cache_mib), self.clock)

    def object_path(self, upload_id: str) -> Path:
        """Where the object of an upload is stored once its PUT completed."""
        return self.objects_dir / f"{upload_id}.bin"

    def remove_partial_objects(self) -> int:
        """Delete bodies of PUTs that never completed (left by a crash); returns how many."""
        removed = 0
        for path in self.objects_dir.glob("*.part"):
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
        return removed

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(db, *args)` on the db thread and wait for it (for callers outside the event loop)."""
        return self._executor.submit(self._invoke, fn, args).result()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(db, *args)` on the db thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(self._invoke, fn, args))

    def _invoke(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        assert self._db is not None, "the sandbox store is closed"
        return fn(self._db, *args)

    def close(self) -> None:
        """Close the db thread's connection and stop the thread."""

        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        self._executor.submit(_close).result()
        self._executor.shutdown(wait=True)
