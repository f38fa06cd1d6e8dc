"""The local ledger (DESIGN §5): what this machine uploaded and which datasets it knows, in SQLite.

Several server processes (Claude Code and Cursor at once) may share one ledger: WAL mode, a busy timeout, and
every write in its own short transaction; no process assumes it is alone. Presigned URLs are never stored.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

UploadState = Literal[
    "url_issued", "uploading", "uploaded", "complete", "partial", "failed", "pending_schema", "cancelled", "orphaned"
]
TERMINAL_STATES: Final = frozenset({"complete", "partial", "failed", "pending_schema"})
DatasetSource = Literal["created", "touched", "batch"]

SCHEMA_VERSION: Final = 1
OWNER: Final = f"{socket.gethostname()}:{os.getpid()}"
"""This process, as the ledger records who started an upload."""
_DDL: Final = """
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    account_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    filename TEXT NOT NULL,
    local_path TEXT,
    format TEXT NOT NULL,
    record_count INTEGER,
    import_id TEXT,
    state TEXT NOT NULL,
    outcome TEXT,
    rejected_file TEXT,
    owner TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_content ON uploads (origin, account_id, dataset_id, sha256, size, id);
CREATE UNIQUE INDEX IF NOT EXISTS uploads_by_import ON uploads (origin, dataset_id, import_id);
CREATE TABLE IF NOT EXISTS datasets (
    origin TEXT NOT NULL,
    account_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    name TEXT,
    workspace_id TEXT,
    source TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (origin, account_id, dataset_id)
);
"""


@dataclass(frozen=True, slots=True)
class UploadKey:
    """What makes two uploads 'the same file to the same dataset'."""

    origin: str
    account_id: str
    dataset_id: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class UploadRow:
    """One upload attempt as the ledger knows it."""

    id: int
    key: UploadKey
    filename: str
    local_path: str | None
    format: str
    record_count: int | None
    import_id: str | None
    state: str
    outcome: dict[str, Any] | None
    rejected_file: str | None
    created_at: float
    updated_at: float
    owner: str | None = None
    """`host:pid` of the process that asked for the upload URL."""

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def owner_alive(self) -> bool | None:
        """Whether the process that started this upload still runs: None when it cannot be told (another host,
        or no owner recorded)."""
        if not self.owner or ":" not in self.owner:
            return None
        host, _, pid_text = self.owner.rpartition(":")
        if host != socket.gethostname() or not pid_text.isdigit():
            return None
        pid = int(pid_text)
        if pid == os.getpid():
            return False  # this process: a live upload would be in its upload manager, not only in the ledger
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass(frozen=True, slots=True)
class KnownDataset:
    """A dataset this machine created, touched, or found through a batch."""

    dataset_id: str
    name: str | None
    workspace_id: str | None
    source: str
    last_seen: float


class Ledger:
    """SQLite-backed; safe to share between threads of one process and between processes."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0, clock: Any = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        with self._transaction() as db:
            for statement in filter(str.strip, _DDL.split(";")):
                db.execute(statement)
            columns = {r["name"] for r in db.execute("PRAGMA table_info(uploads)")}
            if "owner" not in columns:  # a ledger written before the owner was recorded
                db.execute("ALTER TABLE uploads ADD COLUMN owner TEXT")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, params))

    # ----- uploads -----

    def latest_upload(self, key: UploadKey) -> UploadRow | None:
        """The most recent upload of this content to this dataset, if any."""
        rows = self._query(
            "SELECT * FROM uploads WHERE origin=? AND account_id=? AND dataset_id=? AND sha256=? AND size=? "
            "ORDER BY id DESC LIMIT 1",
            (key.origin, key.account_id, key.dataset_id, key.sha256, key.size),
        )
        return _upload(rows[0]) if rows else None

    def upload_by_import(self, origin: str, dataset_id: str, import_id: str) -> UploadRow | None:
        rows = self._query(
            "SELECT * FROM uploads WHERE origin=? AND dataset_id=? AND import_id=?", (origin, dataset_id, import_id)
        )
        return _upload(rows[0]) if rows else None

    def uploads_in_state(self, origin: str, *states: str) -> list[UploadRow]:
        marks = ",".join("?" * len(states))  # placeholders only; the values are bound
        sql = f"SELECT * FROM uploads WHERE origin=? AND state IN ({marks}) ORDER BY id"  # noqa: S608
        rows = self._query(sql, (origin, *states))
        return [_upload(r) for r in rows]

    def record_url_issued(
        self,
        key: UploadKey,
        *,
        import_id: str | None,
        filename: str,
        local_path: str | None,
        fmt: str,
        record_count: int | None,
    ) -> UploadRow:
        """Write the import id down before a byte is PUT (DESIGN §5)."""
        now = self._clock()
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO uploads (origin, account_id, dataset_id, sha256, size, filename, local_path, format, "
                "record_count, import_id, state, owner, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    key.origin,
                    key.account_id,
                    key.dataset_id,
                    key.sha256,
                    key.size,
                    filename,
                    local_path,
                    fmt,
                    record_count,
                    import_id,
                    "url_issued",
                    OWNER,
                    now,
                    now,
                ),
            )
            row_id = cur.lastrowid
            row = db.execute("SELECT * FROM uploads WHERE id=?", (row_id,)).fetchone()
        return _upload(row)

    def set_state(self, row_id: int, state: UploadState, outcome: Mapping[str, Any] | None = None) -> UploadRow:
        """Move an upload to `state`; a terminal state stores the import outcome with it."""
        with self._transaction() as db:
            if outcome is not None:
                db.execute(
                    "UPDATE uploads SET state=?, outcome=?, updated_at=? WHERE id=?",
                    (state, json.dumps(dict(outcome), default=str), self._clock(), row_id),
                )
            else:
                db.execute("UPDATE uploads SET state=?, updated_at=? WHERE id=?", (state, self._clock(), row_id))
            row = db.execute("SELECT * FROM uploads WHERE id=?", (row_id,)).fetchone()
        if row is None:
            raise KeyError(f"no upload {row_id} in the ledger")
        return _upload(row)

    def record_rejected_file(self, row_id: int, path: str) -> bool:
        """Claim the rejected-records file of an upload: True for the first caller only (written once)."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE uploads SET rejected_file=?, updated_at=? WHERE id=? AND rejected_file IS NULL",
                (path, self._clock(), row_id),
            )
            return cur.rowcount == 1

    # ----- datasets -----

    def remember_dataset(
        self,
        origin: str,
        account_id: str,
        dataset_id: str,
        *,
        source: DatasetSource,
        name: str | None = None,
        workspace_id: str | None = None,
    ) -> None:
        """Note a dataset; 'created' beats 'touched' beats 'batch' as its source."""
        now = self._clock()
        rank = {"batch": 0, "touched": 1, "created": 2}
        with self._transaction() as db:
            old = db.execute(
                "SELECT source, name, workspace_id FROM datasets WHERE origin=? AND account_id=? AND dataset_id=?",
                (origin, account_id, dataset_id),
            ).fetchone()
            if old is None:
                db.execute(
                    "INSERT INTO datasets VALUES (?,?,?,?,?,?,?,?)",
                    (origin, account_id, dataset_id, name, workspace_id, source, now, now),
                )
                return
            best = source if rank[source] > rank.get(old["source"], 0) else old["source"]
            db.execute(
                "UPDATE datasets SET name=?, workspace_id=?, source=?, last_seen=? "
                "WHERE origin=? AND account_id=? AND dataset_id=?",
                (name or old["name"], workspace_id or old["workspace_id"], best, now, origin, account_id, dataset_id),
            )

    def known_datasets(self, origin: str, account_id: str, workspace_id: str | None = None) -> list[KnownDataset]:
        sql = "SELECT * FROM datasets WHERE origin=? AND account_id=?"
        params: tuple[Any, ...] = (origin, account_id)
        if workspace_id is not None:
            sql += " AND (workspace_id=? OR workspace_id IS NULL)"
            params += (workspace_id,)
        rows = self._query(sql + " ORDER BY last_seen DESC", params)
        return [KnownDataset(r["dataset_id"], r["name"], r["workspace_id"], r["source"], r["last_seen"]) for r in rows]


def _upload(row: sqlite3.Row) -> UploadRow:
    key = UploadKey(row["origin"], row["account_id"], row["dataset_id"], row["sha256"], row["size"])
    return UploadRow(
        id=row["id"],
        key=key,
        filename=row["filename"],
        local_path=row["local_path"],
        format=row["format"],
        record_count=row["record_count"],
        import_id=row["import_id"],
        state=row["state"],
        outcome=json.loads(row["outcome"]) if row["outcome"] else None,
        rejected_file=row["rejected_file"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        owner=row["owner"],
    )
