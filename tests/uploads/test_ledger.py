from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prolific_mcp.uploads.ledger import Ledger, UploadKey

KEY = UploadKey("http://127.0.0.1:1", "user-1", "ds-1", "a" * 64, 123)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite3")


def test_an_upload_moves_through_its_states_and_keeps_its_outcome(ledger: Ledger) -> None:
    assert ledger.latest_upload(KEY) is None
    row = ledger.record_url_issued(
        KEY, import_id="imp-1", filename="a.jsonl", local_path="/x/a.jsonl", fmt="jsonl", record_count=10
    )
    assert (row.state, row.import_id, row.is_terminal) == ("url_issued", "imp-1", False)
    ledger.set_state(row.id, "uploading")
    ledger.set_state(row.id, "uploaded")
    done = ledger.set_state(row.id, "partial", {"status": "partial", "accepted_count": 8, "rejected_count": 2})
    assert done.is_terminal
    assert done.outcome == {"status": "partial", "accepted_count": 8, "rejected_count": 2}
    again = ledger.latest_upload(KEY)
    assert again is not None
    assert again.id == row.id
    assert ledger.upload_by_import(KEY.origin, KEY.dataset_id, "imp-1") == again
    assert [r.id for r in ledger.uploads_in_state(KEY.origin, "partial", "complete")] == [row.id]


def test_the_latest_attempt_wins_and_other_content_is_another_key(ledger: Ledger) -> None:
    first = ledger.record_url_issued(
        KEY, import_id="imp-1", filename="a.jsonl", local_path=None, fmt="jsonl", record_count=None
    )
    ledger.set_state(first.id, "failed", {"status": "failed"})
    second = ledger.record_url_issued(
        KEY, import_id="imp-2", filename="a.jsonl", local_path=None, fmt="jsonl", record_count=None
    )
    latest = ledger.latest_upload(KEY)
    assert latest is not None
    assert latest.id == second.id
    other = UploadKey(KEY.origin, KEY.account_id, KEY.dataset_id, "b" * 64, KEY.size)
    assert ledger.latest_upload(other) is None


def test_the_rejected_file_is_claimed_once(ledger: Ledger) -> None:
    row = ledger.record_url_issued(
        KEY, import_id="i", filename="a.jsonl", local_path=None, fmt="jsonl", record_count=None
    )
    assert ledger.record_rejected_file(row.id, "/x/a.rejected.jsonl") is True
    assert ledger.record_rejected_file(row.id, "/x/a.rejected.1.jsonl") is False
    latest = ledger.latest_upload(KEY)
    assert latest is not None
    assert latest.rejected_file == "/x/a.rejected.jsonl"


def test_known_datasets_keep_the_strongest_source(ledger: Ledger) -> None:
    ledger.remember_dataset("o", "u", "d1", source="batch", name="From batch", workspace_id="w")
    ledger.remember_dataset("o", "u", "d1", source="created")
    ledger.remember_dataset("o", "u", "d1", source="touched")
    ledger.remember_dataset("o", "u", "d2", source="touched", workspace_id="w2")
    ledger.remember_dataset("other-origin", "u", "d3", source="created")
    known = {d.dataset_id: d for d in ledger.known_datasets("o", "u")}
    assert set(known) == {"d1", "d2"}
    assert (known["d1"].source, known["d1"].name, known["d1"].workspace_id) == ("created", "From batch", "w")
    assert [d.dataset_id for d in ledger.known_datasets("o", "u", workspace_id="w")] == ["d1"]


def test_state_survives_reopening_and_unknown_rows_raise(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    first = Ledger(path)
    row = first.record_url_issued(KEY, import_id="i", filename="a", local_path=None, fmt="csv", record_count=1)
    first.close()
    second = Ledger(path)
    latest = second.latest_upload(KEY)
    assert latest is not None
    assert latest.id == row.id
    with pytest.raises(KeyError, match="no upload"):
        second.set_state(9999, "failed")


def test_two_processes_share_one_ledger(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    mine = Ledger(path)
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from prolific_mcp.uploads.ledger import Ledger, UploadKey
        ledger = Ledger(Path({str(path)!r}))
        for i in range(200):
            key = UploadKey("o", "u", "d", f"{{i:064d}}", i)
            row = ledger.record_url_issued(key, import_id=f"child-{{i}}", filename="f", local_path=None,
                                           fmt="jsonl", record_count=i)
            ledger.set_state(row.id, "uploaded")
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    for i in range(200):
        key = UploadKey("o", "u", "d", f"{i:064x}", i)
        row = mine.record_url_issued(
            key, import_id=f"parent-{i}", filename="f", local_path=None, fmt="jsonl", record_count=i
        )
        mine.set_state(row.id, "uploaded")
    assert child.wait(timeout=60) == 0
    rows = mine.uploads_in_state("o", "uploaded")
    assert len(rows) == 400
    theirs = [r for r in rows if r.import_id and r.import_id.startswith("child-")]
    ours = [r for r in rows if r.import_id and r.import_id.startswith("parent-")]
    assert {r.owner_alive() for r in theirs} == {False}, "the child has exited"
    assert {r.owner_alive() for r in ours} == {False}, "this process keeps live uploads in memory, not the ledger"


def test_an_upload_started_by_a_live_process_is_known_alive(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from prolific_mcp.uploads.ledger import Ledger, UploadKey
        ledger = Ledger(Path({str(path)!r}))
        ledger.record_url_issued(UploadKey("o", "u", "d", "s", 1), import_id="live", filename="f", local_path=None,
                                 fmt="jsonl", record_count=1)
        print("ready", flush=True)
        sys.stdin.read()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=Path(__file__).parents[2], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        row = Ledger(path).upload_by_import("o", "d", "live")
        assert row is not None
        assert row.owner_alive() is True
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    row = Ledger(path).upload_by_import("o", "d", "live")
    assert row is not None
    assert row.owner_alive() is False
