"""Which records a V4 dataset already has: duplicate detection (docs/prolific-api.md, Duplicates), exact and cheap.

A record's identity is the 16-byte digest of its canonical line (`records.record_digest` of its normalised form,
`line_digest` here). The index keeps 8 of those bytes: `record_keys` maps (dataset, key) to the segment that stores
the first record with that key. A chunk of new records is indexed with one statement of small integer entries,
which costs a third of what one 16-byte entry per record did (docs/sandbox.md, Storage).

Exact, not probable: when a key is already taken, the whole digest decides. It is compared with the digests of the
records stored in the key's segment (recomputed from their lines), and a distinct record that shares its key with
another (about n²/2^65 in a dataset of n records) keeps its whole digest in `record_key_collisions`.

Callers hold a transaction. `add_if_all_new` is the fast path of every chunk; when it reports a taken key, the
caller rolls back to before it and asks `sort_out` which records are new, then `index`es those.
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson

from prolific_mcp.sandbox.traffic import ApiTraffic

KEY_STEP: Final = 5000
"""Keys go into the index this many at a time; an import steps aside for the API's requests in between."""
SEGMENT_CACHE_DIGESTS: Final = 1_000_000
"""`sort_out` keeps the digests of the segments it has read up to this many (about 100 MB), then starts afresh."""
INSERT_KEYS: Final = (
    "INSERT OR IGNORE INTO record_keys (dataset_pk, key, segment) SELECT ?1, value, ?2 FROM json_each(?3)"
)
SELECT_TAKEN: Final = (
    "SELECT key, segment FROM record_keys WHERE dataset_pk = ?1 AND key IN (SELECT value FROM json_each(?2))"
)
INSERT_COLLISION: Final = "INSERT INTO record_key_collisions (dataset_pk, digest) VALUES (?, ?)"
SELECT_COLLISION: Final = "SELECT 1 FROM record_key_collisions WHERE dataset_pk = ? AND digest = ?"


def line_digest(line: bytes) -> bytes:
    """The identity of a stored record from its canonical line (equal to `record_digest` of the record)."""
    return hashlib.blake2b(line, digest_size=16).digest()


def keys_of(digests: Sequence[bytes]) -> list[int]:
    """The index key of each 16-byte digest: its first 8 bytes as a signed 64-bit integer."""
    return list(struct.unpack(f">{2 * len(digests)}q", b"".join(digests))[0::2])


def add_if_all_new(
    c: sqlite3.Connection,
    dataset_pk: int,
    segment: int,
    digests: Sequence[bytes],
    traffic: ApiTraffic | None = None,
) -> bool:
    """Index every record of `segment` (`digests`, one per record) and return True, when no key is taken yet.

    False when a key was taken (a duplicate, two equal records in `digests`, or a shared key): the index then
    holds part of them, and the caller must roll back to before this call. With `traffic`, steps aside for the
    API's requests between steps of KEY_STEP keys.
    """
    keys = sorted(keys_of(digests))  # in key order, the inserts walk the index's pages once
    added = 0
    for at in range(0, len(keys), KEY_STEP):
        if traffic is not None and traffic.in_flight:
            traffic.step_aside()
        added += c.execute(INSERT_KEYS, (dataset_pk, segment, _json(keys[at : at + KEY_STEP]))).rowcount
    return added == len(keys)


@dataclass
class Verdict:
    """Which records of a list are new to the dataset, and what indexing them takes (see `sort_out`)."""

    new: list[bool]
    """Per record, in order: not in the dataset, nor equal to an earlier record of the list."""
    keys: list[int] = field(default_factory=list)
    """The keys of the new records that are the first with their key."""
    collisions: list[bytes] = field(default_factory=list)
    """The whole digests of the new records whose key another record has."""


def sort_out(c: sqlite3.Connection, dataset_pk: int, digests: Sequence[bytes]) -> Verdict:
    """Decide exactly which of `digests` are new to the dataset (and to the records before them in the list)."""
    keys = keys_of(digests)
    taken: dict[int, int] = dict(c.execute(SELECT_TAKEN, (dataset_pk, _json(sorted(set(keys))))).fetchall())
    stored = _SegmentDigests(c)
    verdict = Verdict(new=[])
    first_keys: set[int] = set()  # keys first taken by a new record of this list
    seen: set[bytes] = set()  # the digests of this list's new records
    for key, digest in zip(keys, digests, strict=True):
        if digest in seen:
            is_new = False
        elif key in taken:
            is_new = digest not in stored.of(taken[key]) and not _is_collision(c, dataset_pk, digest)
            if is_new:
                verdict.collisions.append(digest)
        elif key in first_keys:
            is_new = True  # another new record of this list has the key, and a different digest
            verdict.collisions.append(digest)
        else:
            is_new = True
            first_keys.add(key)
            verdict.keys.append(key)
        if is_new:
            seen.add(digest)
        verdict.new.append(is_new)
    return verdict


def index(c: sqlite3.Connection, dataset_pk: int, segment: int, verdict: Verdict) -> None:
    """Index the new records of `verdict`, stored in `segment`."""
    keys = sorted(verdict.keys)
    for at in range(0, len(keys), KEY_STEP):
        c.execute(INSERT_KEYS, (dataset_pk, segment, _json(keys[at : at + KEY_STEP])))
    if verdict.collisions:
        c.executemany(INSERT_COLLISION, [(dataset_pk, digest) for digest in verdict.collisions])


def index_segment(
    c: sqlite3.Connection,
    dataset_pk: int,
    segment: int,
    digests: Sequence[bytes],
    traffic: ApiTraffic | None = None,
) -> None:
    """Index a stored segment whose records all stay, equal ones included (a schema migration, a rebuild): each
    distinct record is indexed once."""
    c.execute("SAVEPOINT index_segment")
    if not add_if_all_new(c, dataset_pk, segment, digests, traffic):
        c.execute("ROLLBACK TO index_segment")
        index(c, dataset_pk, segment, sort_out(c, dataset_pk, digests))
    c.execute("RELEASE index_segment")


def forget(c: sqlite3.Connection, dataset_pk: int) -> None:
    """Drop the dataset's index (a schema migration rebuilds it)."""
    c.execute("DELETE FROM record_keys WHERE dataset_pk = ?", (dataset_pk,))
    c.execute("DELETE FROM record_key_collisions WHERE dataset_pk = ?", (dataset_pk,))


def rebuild(c: sqlite3.Connection, dataset_pk: int) -> None:
    """Index the dataset's stored records afresh, segment by segment in order."""
    forget(c, dataset_pk)
    segments = [row[0] for row in c.execute("SELECT id FROM segments WHERE dataset_pk = ? ORDER BY id", (dataset_pk,))]
    for segment in segments:
        (data,) = c.execute("SELECT data FROM segments WHERE id = ?", (segment,)).fetchone()
        index_segment(c, dataset_pk, segment, [line_digest(line) for line in bytes(data).split(b"\n")])


def _json(keys: list[int]) -> str:
    """A JSON array of keys, as text: SQLite 3.45 and later read a BLOB given to `json_each` as its binary JSONB."""
    return orjson.dumps(keys).decode()


def _is_collision(c: sqlite3.Connection, dataset_pk: int, digest: bytes) -> bool:
    return c.execute(SELECT_COLLISION, (dataset_pk, digest)).fetchone() is not None


class _SegmentDigests:
    """The digests of stored segments' records, read on demand and kept for one `sort_out`, within a bound."""

    def __init__(self, c: sqlite3.Connection) -> None:
        self.c = c
        self.by_segment: dict[int, frozenset[bytes]] = {}
        self.held = 0

    def of(self, segment: int) -> frozenset[bytes]:
        found = self.by_segment.get(segment)
        if found is None:
            row = self.c.execute("SELECT data FROM segments WHERE id = ?", (segment,)).fetchone()
            found = frozenset() if row is None else frozenset(map(line_digest, bytes(row[0]).split(b"\n")))
            if self.held + len(found) > SEGMENT_CACHE_DIGESTS:
                self.by_segment.clear()
                self.held = 0
            self.by_segment[segment] = found
            self.held += len(found)
        return found
