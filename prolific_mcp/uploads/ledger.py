"""The local ledger (docs/architecture.md, The ledger): what this machine uploaded and which datasets it knows.

SQLite in the state directory. Several server processes (Claude Code and Cursor at once) may share one ledger:
WAL mode, a busy timeout, and every write in its own short transaction; no process assumes it is alone.
Presigned URLs are never stored. The folder is `0700` and the database files `0600`.

An upload row moves through these states (one row per attempt, keyed by origin, account, dataset, sha256, size):

- `claimed`: a process took the key (`Ledger.claim`) and is about to ask for an upload URL; no import yet.
- `url_issued` → `uploading` → `uploaded`: the import id is recorded before a byte is sent.
- terminal: `complete`, `partial`, `failed`, `pending_schema`; or `cancelled`, `orphaned` (abandoned).

`claim` decides, in one `BEGIN IMMEDIATE` transaction, who uploads: however many calls and processes race for
one key, exactly one becomes the owner; the others attach to the owner's row. A row in `claimed`, `url_issued`
or `uploading` whose owner process (pid and start time) has died is taken over: it becomes `orphaned` and the
new claim names it, so its import can be reported.

At open, the ledger's integrity is checked (`PRAGMA quick_check`); a damaged file (or a directory in its place)
is moved aside with a timestamp suffix and a fresh ledger is started; `take_notice()` gives the sentence to show
once, `recovery` keeps it for `doctor`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

if sys.platform != "win32":
    pass

from prolific_mcp.settings import prepare_state_dir
from prolific_mcp.uploads.ledger_health import (
    DB_FILE_MODE,
    Recovery,
    damage,
    file_lock,
    health,
    make_private,
    move_aside,
    moved_aside,
    state_dir_error,
)
from prolific_mcp.uploads.owners import OwnerState, current_owner, owner_state

__all__ = [
    "Claim",
    "ClaimLost",
    "KnownDataset",
    "Ledger",
    "LedgerError",
    "Recovery",
    "UploadKey",
    "UploadRow",
    "current_owner",
    "damage",
    "health",
    "moved_aside",
    "owner_state",
]

UploadState = Literal[
    "claimed",
    "url_issued",
    "uploading",
    "uploaded",
    "complete",
    "partial",
    "failed",
    "pending_schema",
    "cancelled",
    "orphaned",
]
TERMINAL_STATES: Final = frozenset({"complete", "partial", "failed", "pending_schema"})
IN_FLIGHT_STATES: Final = frozenset({"claimed", "url_issued", "uploading"})
"""States in which the owner process is between its claim and the end of its PUT."""
FINISHED_STATES: Final = frozenset({"complete", "partial", "pending_schema"})
DatasetSource = Literal["created", "touched", "batch"]
SOURCE_RANK: Final[Mapping[str, int]] = {"batch": 0, "touched": 1, "created": 2}
"""How a dataset came to be known: a higher rank is kept over a lower one."""

SCHEMA_VERSION: Final = 2
UNKNOWN_OWNER_GRACE_SECONDS: Final = 120.0
"""A row whose owner cannot be checked (another host) counts as live this long after its last change."""


class LedgerError(RuntimeError):
    """The ledger could not be read or written; the message says where and what to do."""


class ClaimLost(LedgerError):
    """Another process took over this claim (it judged this one abandoned)."""


_HELD: set[tuple[str, int]] = set()
"""(ledger file, row id) of the claims this process holds and has not finished: live, not abandoned."""
_HELD_LOCK = threading.Lock()
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

    @property
    def owner_state(self) -> OwnerState:
        """Whether the owner process is this one, alive, dead, or cannot be told."""
        return owner_state(self.owner)

    def owner_alive(self) -> bool | None:
        """Whether the process that started this upload still runs: None when it cannot be told (another host,
        or no owner recorded); False for this process (its live uploads are in its upload manager)."""
        state = self.owner_state
        if state == "unknown":
            return None
        return state == "alive"


ClaimStatus = Literal["owner", "in_flight", "uploaded", "finished"]


@dataclass(frozen=True, slots=True)
class Claim:
    """What `Ledger.claim` decided for one key.

    - `owner`: this call owns `row` (state `claimed`): ask for the upload URL, then `record_import`, or `release`
      if it stops before asking.
    - `in_flight`: another call or process owns `row` and is alive: attach to it (follow `row.import_id` once
      the row has one: re-read it with `Ledger.upload`), never upload the file again.
    - `uploaded`: the file was PUT; watch `row.import_id`.
    - `finished`: `row` holds a stored outcome (`complete`, `partial`, `pending_schema`).
    """

    status: ClaimStatus
    row: UploadRow
    superseded: UploadRow | None = None
    """An abandoned row this claim took over (now `orphaned`), or the latest `orphaned`/`cancelled` row with an
    import: its import is to be checked before it is called empty (and adopted with `Ledger.adopt` if it received
    the file)."""

    @property
    def won(self) -> bool:
        return self.status == "owner"


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
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._notice: str | None = None
        self.recovery: Recovery | None = None
        """Set when the ledger found at open was damaged and replaced (for doctor and the next result)."""
        prepare_state_dir(path.parent)
        self._held_key = os.path.abspath(path)
        with file_lock(path):
            problem = damage(path, busy_timeout)
            if problem is not None:
                moved = move_aside(path, clock())
                self.recovery = Recovery(problem, moved, clock())
                self._notice = self.recovery.sentence
            self._db = self._connect(busy_timeout)
        make_private(path)

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        path = self.path
        try:
            if not path.exists():
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), DB_FILE_MODE))
            db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, _DDL.split(";")):
                    db.execute(statement)
                columns = {r["name"] for r in db.execute("PRAGMA table_info(uploads)")}
                if "owner" not in columns:  # a ledger written before the owner was recorded
                    db.execute("ALTER TABLE uploads ADD COLUMN owner TEXT")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except (OSError, sqlite3.OperationalError) as exc:
            raise state_dir_error(path, exc) from None
        return db

    def now(self) -> float:
        """The ledger's clock (wall time, seconds): what it writes as `last_seen`."""
        return float(self._clock())

    def take_notice(self) -> str | None:
        """The sentence about a damaged ledger replaced at open: returned once, then None."""
        with self._lock:
            notice, self._notice = self._notice, None
        return notice

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise state_dir_error(self.path, exc) from None
            try:
                yield self._db
            except sqlite3.OperationalError as exc:
                self._db.execute("ROLLBACK")
                raise state_dir_error(self.path, exc) from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise state_dir_error(self.path, exc) from None

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, params))

    def _hold(self, row_id: int) -> None:
        with _HELD_LOCK:
            _HELD.add((self._held_key, row_id))

    def _drop(self, row_id: int) -> None:
        with _HELD_LOCK:
            _HELD.discard((self._held_key, row_id))

    def _holds(self, row_id: int) -> bool:
        with _HELD_LOCK:
            return (self._held_key, row_id) in _HELD

    # ----- uploads -----

    def latest_upload(self, key: UploadKey) -> UploadRow | None:
        """The most recent upload of this content to this dataset, if any."""
        rows = self._query(
            "SELECT * FROM uploads WHERE origin=? AND account_id=? AND dataset_id=? AND sha256=? AND size=? "
            "ORDER BY id DESC LIMIT 1",
            (key.origin, key.account_id, key.dataset_id, key.sha256, key.size),
        )
        return _upload(rows[0]) if rows else None

    def upload(self, row_id: int) -> UploadRow | None:
        """One upload row by id (a latecomer re-reads the row it attached to)."""
        rows = self._query("SELECT * FROM uploads WHERE id=?", (row_id,))
        return _upload(rows[0]) if rows else None

    def claim(
        self,
        key: UploadKey,
        *,
        filename: str,
        local_path: str | None,
        fmt: str,
        record_count: int | None,
        force: bool = False,
    ) -> Claim:
        """Decide atomically who uploads this content to this dataset (see the module's docstring for states).

        In one `BEGIN IMMEDIATE` transaction: the latest row for `key` is read; a live in-flight row (its owner
        alive: another process, or a claim this process holds) is returned for the caller to attach to; an
        `uploaded` row is returned to watch; a finished row is returned as the stored outcome (unless `force`);
        otherwise (no row, failed, cancelled, orphaned, an in-flight row whose owner died, or `force` over a
        finished or uploaded row) a new `claimed` row owned by this process is inserted, and an abandoned row
        it replaces becomes `orphaned` and is returned as `superseded`.
        """
        now = self._clock()
        with self._transaction() as db:
            found = db.execute(
                "SELECT * FROM uploads WHERE origin=? AND account_id=? AND dataset_id=? AND sha256=? AND size=? "
                "ORDER BY id DESC LIMIT 1",
                (key.origin, key.account_id, key.dataset_id, key.sha256, key.size),
            ).fetchone()
            latest = _upload(found) if found is not None else None
            superseded: UploadRow | None = None
            if latest is not None:
                if latest.state in IN_FLIGHT_STATES:
                    if self._live(latest, now):
                        return Claim("in_flight", latest)
                    db.execute("UPDATE uploads SET state='orphaned', updated_at=? WHERE id=?", (now, latest.id))
                    superseded = _upload(db.execute("SELECT * FROM uploads WHERE id=?", (latest.id,)).fetchone())
                elif latest.state in ("orphaned", "cancelled") and latest.import_id:
                    superseded = latest  # its import may hold the file after all: the caller checks it
                elif latest.state == "uploaded" and not force:
                    return Claim("uploaded", latest)
                elif latest.state in FINISHED_STATES and not force:
                    return Claim("finished", latest)
            row = _insert_upload(db, key, filename, local_path, fmt, record_count, None, "claimed", now)
            self._hold(row.id)
        return Claim("owner", row, superseded)

    def _live(self, row: UploadRow, now: float) -> bool:
        """Whether an in-flight row's owner is still at work on it."""
        state = row.owner_state
        if state == "alive":
            return True
        if state == "self":
            return self._holds(row.id)  # held until record_import, set_state or release ends it
        if state == "unknown":
            return now - row.updated_at < UNKNOWN_OWNER_GRACE_SECONDS
        return False

    def record_import(self, row_id: int, import_id: str | None) -> UploadRow:
        """The owner of a claim got its upload URL: record the import id (`url_issued`) before a byte is PUT.

        Raises ClaimLost if the row is no longer this process's claim (another process took it over)."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE uploads SET import_id=?, state='url_issued', updated_at=? "
                "WHERE id=? AND owner=? AND state IN ('claimed', 'url_issued', 'uploading')",
                (import_id, self._clock(), row_id, current_owner()),
            )
            if cur.rowcount != 1:
                raise ClaimLost(f"upload {row_id} was taken over by another server process: follow that upload instead")
            row = db.execute("SELECT * FROM uploads WHERE id=?", (row_id,)).fetchone()
        return _upload(row)

    def adopt(self, claim_id: int, abandoned_id: int) -> UploadRow:
        """Follow an abandoned row's import instead of uploading again (its import received the file): in one
        transaction this process's claim `claim_id` is removed and `abandoned_id` becomes `uploaded`, owned by this
        process. Latecomers attached to the claim find it gone and claim again, which leads them to the import."""
        with self._transaction() as db:
            db.execute("DELETE FROM uploads WHERE id=? AND owner=? AND state='claimed'", (claim_id, current_owner()))
            db.execute(
                "UPDATE uploads SET state='uploaded', owner=?, updated_at=? WHERE id=?",
                (current_owner(), self._clock(), abandoned_id),
            )
            row = db.execute("SELECT * FROM uploads WHERE id=?", (abandoned_id,)).fetchone()
        self._drop(claim_id)
        if row is None:
            raise KeyError(f"no upload {abandoned_id} in the ledger")
        return _upload(row)

    def release(self, row_id: int) -> None:
        """Give up a claim that never asked for an upload URL (the row is removed; nothing was created)."""
        with self._transaction() as db:
            db.execute("DELETE FROM uploads WHERE id=? AND owner=? AND state='claimed'", (row_id, current_owner()))
        self._drop(row_id)

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
        """Write the import id down before a byte is PUT (docs/architecture.md, The ledger)."""
        now = self._clock()
        with self._transaction() as db:
            row = _insert_upload(db, key, filename, local_path, fmt, record_count, import_id, "url_issued", now)
        self._hold(row.id)
        return row

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
        if state not in IN_FLIGHT_STATES:
            self._drop(row_id)
        if row is None:
            raise KeyError(f"no upload {row_id} in the ledger")
        return _upload(row)

    def set_record_count(self, row_id: int, record_count: int) -> None:
        """Note an upload's record count, known only once its pre-flight ends (when that runs beside the PUT)."""
        with self._transaction() as db:
            db.execute("UPDATE uploads SET record_count=? WHERE id=?", (record_count, row_id))

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
            best = source if SOURCE_RANK[source] > SOURCE_RANK.get(old["source"], 0) else old["source"]
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


def _insert_upload(
    db: sqlite3.Connection,
    key: UploadKey,
    filename: str,
    local_path: str | None,
    fmt: str,
    record_count: int | None,
    import_id: str | None,
    state: UploadState,
    now: float,
) -> UploadRow:
    """Add one upload row owned by this process, inside the caller's transaction, and read it back."""
    cur = db.execute(
        "INSERT INTO uploads (origin, account_id, dataset_id, sha256, size, filename, local_path, format, "
        "record_count, import_id, state, owner, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            *(key.origin, key.account_id, key.dataset_id, key.sha256, key.size),
            *(filename, local_path, fmt, record_count, import_id, state, current_owner(), now, now),
        ),
    )
    return _upload(db.execute("SELECT * FROM uploads WHERE id=?", (cur.lastrowid,)).fetchone())
