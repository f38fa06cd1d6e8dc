"""What the sandbox's SQLite database holds: its schema (SQL) and one frozen type per kind of row."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

ImportStatus = Literal["uninitialised", "queued", "processing", "complete", "partial", "failed", "pending_schema"]
ACTIVE_IMPORT_STATUSES: Final = ("queued", "processing")
V3Status = Literal["UNINITIALISED", "PROCESSING", "READY", "ERROR"]

SCHEMA_SQL: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, first_name TEXT NOT NULL, last_name TEXT NOT NULL, email TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS workspaces (
    pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, title TEXT NOT NULL, description TEXT NOT NULL,
    owner TEXT NOT NULL, created_at REAL NOT NULL, typed INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS datasets (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    version INTEGER NOT NULL,
    schema TEXT,
    schema_revision INTEGER NOT NULL DEFAULT 0,
    v3_status TEXT,
    v3_filename TEXT,
    v3_grouping INTEGER,
    total INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS uploads (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    dataset_pk INTEGER NOT NULL,
    kind TEXT NOT NULL,
    filename TEXT NOT NULL,
    file_key TEXT NOT NULL UNIQUE,
    content_type TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    arrived_at REAL,
    object_size INTEGER,
    etag TEXT,
    processing_started_at REAL,
    processed_offset INTEGER NOT NULL DEFAULT 0,
    accepted_seen INTEGER NOT NULL DEFAULT 0,
    written_count INTEGER NOT NULL DEFAULT 0,
    duplicate_seen INTEGER NOT NULL DEFAULT 0,
    rejected_seen INTEGER NOT NULL DEFAULT 0,
    error_count INTEGER NOT NULL DEFAULT 0,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS uploads_by_dataset ON uploads (dataset_pk, pk);
CREATE TABLE IF NOT EXISTS migrations (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    dataset_pk INTEGER NOT NULL,
    schema_revision INTEGER NOT NULL,
    schema TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    arrived_at REAL NOT NULL,
    started_at REAL,
    progress INTEGER NOT NULL DEFAULT 0,
    position INTEGER NOT NULL DEFAULT 0,
    reprocessed_count INTEGER NOT NULL DEFAULT 0,
    failed_count INTEGER NOT NULL DEFAULT 0,
    error_count INTEGER NOT NULL DEFAULT 0,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS migrations_by_dataset ON migrations (dataset_pk, pk);
CREATE TABLE IF NOT EXISTS job_errors (
    job_id TEXT NOT NULL, n INTEGER NOT NULL, record_index INTEGER, field TEXT, reason TEXT,
    PRIMARY KEY (job_id, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY, dataset_pk INTEGER NOT NULL, count INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_dataset ON segments (dataset_pk, id);
CREATE TABLE IF NOT EXISTS record_keys (
    dataset_pk INTEGER NOT NULL, key INTEGER NOT NULL, segment INTEGER NOT NULL, PRIMARY KEY (dataset_pk, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_key_collisions (
    dataset_pk INTEGER NOT NULL, digest BLOB NOT NULL, PRIMARY KEY (dataset_pk, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, workspace_id TEXT NOT NULL,
    dataset_id TEXT, status TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_by_workspace ON batches (workspace_id, pk);
"""


@dataclass(frozen=True, slots=True)
class DatasetRow:
    """One dataset as stored."""

    pk: int
    id: str
    name: str
    workspace_id: str
    created_by: str
    created_at: float
    version: int
    schema: dict[str, Any] | None
    schema_revision: int
    v3_status: str | None
    v3_filename: str | None
    v3_grouping: bool | None
    total: int

    @property
    def has_schema(self) -> bool:
        """True for a V4 dataset whose schema has at least one field (docs/prolific-api.md)."""
        return self.version == 4 and bool(self.schema and self.schema.get("fields"))

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> DatasetRow:
        schema = row["schema"]
        grouping = row["v3_grouping"]
        return cls(
            pk=row["pk"],
            id=row["id"],
            name=row["name"],
            workspace_id=row["workspace_id"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            version=row["version"],
            schema=orjson.loads(schema) if schema is not None else None,
            schema_revision=row["schema_revision"],
            v3_status=row["v3_status"],
            v3_filename=row["v3_filename"],
            v3_grouping=None if grouping is None else bool(grouping),
            total=row["total"],
        )


@dataclass(frozen=True, slots=True)
class StoredUpload:
    """One upload: a V4 import job (`kind` 'import') or a V3 upload (`kind` 'v3')."""

    pk: int
    id: str
    dataset_pk: int
    kind: str
    filename: str
    file_key: str
    content_type: str
    status: str
    created_at: float
    updated_at: float
    expires_at: float
    arrived_at: float | None
    object_size: int | None
    etag: str | None
    processing_started_at: float | None
    processed_offset: int
    accepted_seen: int
    written_count: int
    duplicate_seen: int
    rejected_seen: int
    error_count: int
    reason: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StoredUpload:
        return cls(**{name: row[name] for name in cls.__slots__})


@dataclass(frozen=True, slots=True)
class MigrationRow:
    """One schema migration job."""

    pk: int
    id: str
    dataset_pk: int
    schema_revision: int
    schema: str
    status: str
    created_at: float
    updated_at: float
    arrived_at: float
    started_at: float | None
    progress: int
    position: int
    reprocessed_count: int
    failed_count: int
    error_count: int
    reason: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> MigrationRow:
        return cls(**{name: row[name] for name in cls.__slots__})


@dataclass(frozen=True, slots=True)
class JobError:
    """One itemised error of an import, append or migration."""

    record_index: int | None
    field: str | None
    reason: str | None

    def to_dict(self) -> dict[str, object]:
        return {"record_index": self.record_index, "field": self.field, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class NextJob:
    """The next piece of work on a dataset: an import (or V3 upload) or a migration."""

    kind: Literal["upload", "migration"]
    pk: int
