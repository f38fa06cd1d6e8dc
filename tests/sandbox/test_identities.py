"""Duplicate detection stays exact when distinct records share an index key (docs/sandbox.md, Storage).

The index keys a record by 8 bytes of its 16-byte digest, so two distinct records share a key about n²/2^65 of
the time: too rare to meet by chance. Here keys are made coarse (three values), so most distinct records share
one, and every count must still be the exact one: nothing distinct is dropped, nothing equal is stored twice.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
import pytest

from prolific_mcp.sandbox import Sandbox, identities
from prolific_mcp.sandbox.clock import Clock
from prolific_mcp.sandbox.importer import canonical, store_records
from prolific_mcp.sandbox.store import DB_FILENAME, Db, Store

from .conftest import client
from .support import DATASETS, SCHEMA, create_dataset, get_dataset, import_and_wait, jsonl, record, wait_for


def coarse_keys(digests: Sequence[bytes]) -> list[int]:
    """Three keys in all (one of them negative), so distinct records share keys all the time."""
    return [digest[0] % 3 - 1 for digest in digests]


@pytest.fixture
def coarse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identities, "keys_of", coarse_keys)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    store = Store(tmp_path / "state", Clock())
    db = store.connect()
    try:
        yield db
    finally:
        db.close()
        store.close()


def lines_of(values: Sequence[dict[str, object]]) -> tuple[list[bytes], list[bytes]]:
    pairs = [canonical(v) for v in values]
    return [line for line, _ in pairs], [digest for _, digest in pairs]


def stored_lines(db: Db, dataset_pk: int) -> list[bytes]:
    rows = db.conn.execute("SELECT data FROM segments WHERE dataset_pk = ? ORDER BY id", (dataset_pk,))
    return [line for (data,) in rows for line in bytes(data).split(b"\n")]


def new_dataset(db: Db) -> int:
    return db.create_dataset("d", db.default_workspace_id(), 4, SCHEMA).pk


@pytest.mark.usefixtures("coarse")
def test_chunks_with_shared_keys_store_each_distinct_record_once_in_order(db: Db) -> None:
    rng = random.Random(7)
    pool = [record(i) for i in range(60)]
    ds = new_dataset(db)
    seen: list[bytes] = []
    for _ in range(40):
        values = [rng.choice(pool) for _ in range(rng.randint(1, 25))]
        lines, digests = lines_of(values)
        expected = [line for at, line in enumerate(lines) if line not in seen and line not in lines[:at]]
        with db.transaction() as c:
            assert store_records(c, ds, digests, lines) == len(expected)
        seen += expected
    assert len(seen) == 60, "every distinct record of the pool went in"
    assert stored_lines(db, ds) == seen
    # Distinct records share the three keys: all but three of them are collisions, held by whole digest.
    assert db.conn.execute("SELECT COUNT(*) FROM record_keys WHERE dataset_pk = ?", (ds,)).fetchone()[0] == 3
    assert db.conn.execute("SELECT COUNT(*) FROM record_key_collisions WHERE dataset_pk = ?", (ds,)).fetchone()[0] == 57


@pytest.mark.usefixtures("coarse")
def test_datasets_do_not_share_identities(db: Db) -> None:
    first, second = new_dataset(db), new_dataset(db)
    lines, digests = lines_of([record(i) for i in range(10)])
    with db.transaction() as c:
        assert store_records(c, first, digests, lines) == 10
        assert store_records(c, second, digests, lines) == 10
        assert store_records(c, first, digests[:4], lines[:4]) == 0


def test_real_keys_take_the_fast_path_and_see_duplicates(db: Db) -> None:
    ds = new_dataset(db)
    lines, digests = lines_of([record(i) for i in range(2000)])
    with db.transaction() as c:
        assert store_records(c, ds, digests[:1500], lines[:1500]) == 1500
        # 500 new, 1,000 known, and one repeated within the list.
        assert store_records(c, ds, digests[500:] + digests[-1:], lines[500:] + lines[-1:]) == 500
    assert stored_lines(db, ds) == lines
    assert db.conn.execute("SELECT COUNT(*) FROM record_keys").fetchone()[0] == 2000
    assert db.conn.execute("SELECT COUNT(*) FROM record_key_collisions").fetchone()[0] == 0


@pytest.mark.usefixtures("coarse")
def test_index_segment_keeps_equal_records_and_indexes_each_distinct_one_once(db: Db) -> None:
    ds = new_dataset(db)
    values = [record(i % 7) for i in range(30)]  # 7 distinct records, repeated: a migration made them equal
    lines, digests = lines_of(values)
    with db.transaction() as c:
        segment = c.execute(
            "INSERT INTO segments (dataset_pk, count, data) VALUES (?, ?, ?)", (ds, len(lines), b"\n".join(lines))
        ).lastrowid
        assert segment is not None
        identities.index_segment(c, ds, segment, digests)
        again, again_digests = lines_of([record(i) for i in range(10)])
        assert store_records(c, ds, again_digests, again) == 3  # 0-6 are known; 7, 8, 9 are new
    assert len(stored_lines(db, ds)) == 33


@pytest.mark.usefixtures("coarse")
def test_imports_appends_and_a_migration_count_exactly_with_shared_keys(fresh: Sandbox) -> None:
    with client(fresh) as api:
        ds = create_dataset(api, fresh.workspace_id)
        first = [record(i) for i in range(40)] + [record(3), record(17)]
        job = import_and_wait(api, ds["id"], "a.jsonl", jsonl(first))
        assert (job["accepted_count"], job["duplicate_count"], job["written_count"]) == (42, 2, 40)
        second = [record(i) for i in range(30, 60)]
        job = import_and_wait(api, ds["id"], "b.jsonl", jsonl(second))
        assert (job["duplicate_count"], job["written_count"]) == (10, 20)
        appended = api.post(
            f"{DATASETS}/{ds['id']}/datapoints",
            content=jsonl([record(5), record(60), record(60)]),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert appended.status_code == 200, appended.text
        assert (appended.json()["accepted_count"], appended.json()["duplicate_count"]) == (3, 2)
        assert get_dataset(api, ds["id"])["total_datapoint_count"] == 61
        # Keep only `batch` (three values): the 61 datapoints stay, and identities follow the new schema.
        fewer = {"strict": False, "fields": {"batch": {"type": "task_group_id"}}}
        job_id = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": fewer}).json()["migration_job_id"]
        wait_for(
            lambda: api.get(f"{DATASETS}/{ds['id']}/schema-migrations/{job_id}").json()["status"] == "complete" or None
        )
        assert get_dataset(api, ds["id"])["total_datapoint_count"] == 61
        job = import_and_wait(
            api, ds["id"], "c.jsonl", jsonl([{"batch": "b0"}, {"batch": "b2"}, {"batch": "b9"}, {"batch": "b9"}])
        )
        assert (job["duplicate_count"], job["written_count"]) == (3, 1)
        assert get_dataset(api, ds["id"])["total_datapoint_count"] == 62


def test_a_state_folder_from_before_record_keys_is_indexed_afresh(tmp_path: Path) -> None:
    state = tmp_path / "state"
    records = [record(i) for i in range(25)]
    with Sandbox.start(state_dir=state, pace="fast") as sandbox, client(sandbox) as api:
        ds = create_dataset(api, sandbox.workspace_id)
        assert import_and_wait(api, ds["id"], "a.jsonl", jsonl(records))["written_count"] == 25
    # The state of an earlier version: the 16-byte `identities` index, and no `record_keys`.
    with sqlite3.connect(state / DB_FILENAME) as conn:
        conn.execute("DELETE FROM record_keys")
        conn.execute(
            "CREATE TABLE identities (dataset_pk INTEGER NOT NULL, digest BLOB NOT NULL,"
            " PRIMARY KEY (dataset_pk, digest)) WITHOUT ROWID"
        )
        (pk,) = conn.execute("SELECT pk FROM datasets WHERE id = ?", (ds["id"],)).fetchone()
        conn.executemany("INSERT INTO identities VALUES (?, ?)", [(pk, canonical(r)[1]) for r in records])
    conn.close()
    with Sandbox.start(state_dir=state, pace="fast") as sandbox, client(sandbox) as api:
        job = import_and_wait(api, ds["id"], "b.jsonl", jsonl([*records[:10], record(99)]))
        assert (job["duplicate_count"], job["written_count"]) == (10, 1)
        assert get_dataset(api, ds["id"])["total_datapoint_count"] == 26
    with sqlite3.connect(state / DB_FILENAME) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "identities" not in tables
        assert conn.execute("SELECT COUNT(*) FROM record_keys").fetchone()[0] == 26
    conn.close()


def test_a_key_is_the_first_eight_bytes_of_the_digest_signed() -> None:
    digests = [bytes(range(16)), b"\xff" * 16, b"\x80" + b"\x00" * 15]
    assert identities.keys_of(digests) == [0x0001020304050607, -1, -(2**63)]
    assert orjson.loads(orjson.dumps(identities.keys_of(digests))) == identities.keys_of(digests)
