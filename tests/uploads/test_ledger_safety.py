"""The ledger under races, damage and hostile permissions: real threads, real processes, real files.

One file to one dataset makes one import however many calls and processes race (`claim` is one transaction);
a damaged ledger is moved aside and replaced, and said once; the state folder is private; an unwritable one is
named with the variable that moves it.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from prolific_mcp.settings import StateDirError
from prolific_mcp.uploads.ledger import (
    Claim,
    ClaimLost,
    Ledger,
    UploadKey,
    current_owner,
    damage,
    health,
    moved_aside,
    owner_state,
)

ROOT = Path(__file__).parents[2]
KEY = UploadKey("http://127.0.0.1:1", "user-1", "ds-1", "c" * 64, 4096)
CLAIM_ARGS = {"filename": "a.jsonl", "local_path": "/x/a.jsonl", "fmt": "jsonl", "record_count": 3}


def _claim(ledger: Ledger, key: UploadKey = KEY, **extra: object) -> Claim:
    return ledger.claim(key, **{**CLAIM_ARGS, **extra})  # type: ignore[arg-type]


def test_five_threads_racing_for_one_key_make_one_owner(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite3"
    ledgers: list[Ledger] = []
    barrier = threading.Barrier(5)
    claims: list[Claim] = []
    lock = threading.Lock()

    def race() -> None:
        ledger = Ledger(path)  # each thread opens its own connection, all at once
        with lock:
            ledgers.append(ledger)
        barrier.wait(timeout=30)
        got = _claim(ledger)
        with lock:
            claims.append(got)

    threads = [threading.Thread(target=race) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(c.status for c in claims) == ["in_flight"] * 4 + ["owner"]
    assert len({c.row.id for c in claims}) == 1, "the latecomers attach to the owner's row"
    rows = ledgers[0]._query("SELECT COUNT(*) FROM uploads")
    assert rows[0][0] == 1


_RACER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from prolific_mcp.uploads.ledger import Ledger, UploadKey
    ledger = Ledger(Path(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.readline()
    claim = ledger.claim(UploadKey("http://127.0.0.1:1", "user-1", "ds-1", "c" * 64, 4096), filename="a.jsonl",
                         local_path=None, fmt="jsonl", record_count=3)
    print(claim.status, claim.row.id, flush=True)
    sys.stdin.read()
    """
)


def _racers(path: Path, n: int) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    return procs


def test_three_processes_racing_for_one_key_make_one_owner_and_a_dead_owner_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite3"
    procs = _racers(path, 3)
    try:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        answers = []
        for proc in procs:
            assert proc.stdout is not None
            status, row_id = proc.stdout.readline().split()
            answers.append((status, int(row_id), proc))
        assert sorted(a[0] for a in answers) == ["in_flight", "in_flight", "owner"]
        assert len({a[1] for a in answers}) == 1
        mine = Ledger(path)
        assert _claim(mine).status == "in_flight", "the owner process is alive: this process attaches too"
        owner = next(a[2] for a in answers if a[0] == "owner")
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        taken = _claim(mine)
        assert taken.status == "owner", "a claim whose owner died is taken over"
        assert taken.superseded is not None
        assert taken.superseded.id == answers[0][1]
        assert taken.superseded.state == "orphaned"
    finally:
        for proc in procs:
            if proc.poll() is None:
                assert proc.stdin is not None
                proc.stdin.close()
            proc.wait(timeout=30)


def test_claim_rules_for_each_state(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    first = _claim(ledger)
    assert first.won and first.row.state == "claimed" and first.row.import_id is None
    assert _claim(ledger).status == "in_flight", "a claim this process holds is live"
    row = ledger.record_import(first.row.id, "imp-1")
    assert (row.state, row.import_id) == ("url_issued", "imp-1")
    ledger.set_state(row.id, "uploading")
    assert _claim(ledger).status == "in_flight"
    ledger.set_state(row.id, "uploaded")
    uploaded = _claim(ledger)
    assert (uploaded.status, uploaded.row.import_id) == ("uploaded", "imp-1")
    ledger.set_state(row.id, "partial", {"status": "partial"})
    stored = _claim(ledger)
    assert (stored.status, stored.row.id) == ("finished", row.id)
    forced = _claim(ledger, force=True)
    assert forced.won and forced.row.id != row.id
    ledger.release(forced.row.id)
    assert ledger.upload(forced.row.id) is None, "a released claim leaves nothing behind"
    assert _claim(ledger).status == "finished"
    failed = _claim(ledger, force=True)
    ledger.set_state(failed.row.id, "failed", {"status": "failed"})
    assert _claim(ledger).won, "a failed upload may be tried again"


def test_a_claim_taken_over_elsewhere_cannot_record_its_import(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    claim = _claim(ledger)
    with sqlite3.connect(path) as db:  # another process judged this one dead and took the row over
        db.execute("UPDATE uploads SET owner='elsewhere:1', state='orphaned' WHERE id=?", (claim.row.id,))
    with pytest.raises(ClaimLost, match="taken over"):
        ledger.record_import(claim.row.id, "imp-9")


def _damaged(path: Path, how: str) -> None:
    if how == "directory":
        path.mkdir(parents=True)
        return
    ledger = Ledger(path)
    for i in range(300):
        key = UploadKey("o", "u", "d", f"{i:064d}", i)
        got = ledger.claim(key, filename="f" * 200, local_path="/x" * 100, fmt="jsonl", record_count=i)
        ledger.record_import(got.row.id, f"imp-{i}")
    ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.close()
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        if how == "garbage header":
            handle.write(b"this is not SQLite at all" * 4)
        elif how == "truncated":
            handle.truncate(size // 2)
        elif how == "random pages":
            handle.seek(4096 * 2)
            handle.write(os.urandom(4096 * 6))


@pytest.mark.parametrize("how", ["garbage header", "truncated", "random pages", "directory"])
def test_a_damaged_ledger_is_moved_aside_and_said_once(tmp_path: Path, how: str) -> None:
    path = tmp_path / "state" / "ledger.sqlite3"
    _damaged(path, how)
    assert damage(path) is not None
    assert health(path)[0] == "damaged", "doctor sees the damage"
    ledger = Ledger(path)
    assert ledger.recovery is not None
    aside = moved_aside(path)
    assert len(aside) == 1 and ".damaged-" in aside[0].name
    assert ledger.recovery.moved_to == aside[0]
    notice = ledger.take_notice()
    assert notice is not None and "moved aside" in notice and "fresh ledger" in notice
    assert ledger.take_notice() is None, "said once"
    assert _claim(ledger).won, "the fresh ledger works"
    status, sentence = health(path)
    assert status == "ok" and "moved aside earlier" in sentence
    ledger.close()
    again = Ledger(path)
    assert again.recovery is None and again.take_notice() is None


def test_a_damaged_ledger_opened_in_another_process_is_replaced_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite3"
    _damaged(path, "garbage header")
    script = "import sys; from pathlib import Path; from prolific_mcp.uploads.ledger import Ledger; "
    script += "l = Ledger(Path(sys.argv[1])); print(l.take_notice() or 'none')"
    outs = [
        subprocess.run(
            [sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
        ).stdout
        for _ in range(2)
    ]
    assert "moved aside" in outs[0] and outs[1].strip() == "none"
    assert len(moved_aside(path)) == 1


def test_the_state_folder_is_private_and_its_files_owner_only(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        os.umask(0o022)
        from prolific_mcp.uploads.ledger import Ledger, UploadKey
        ledger = Ledger(Path(sys.argv[1]))
        got = ledger.claim(UploadKey("o", "u", "d", "s", 1), filename="f", local_path=None, fmt="jsonl",
                           record_count=1)
        ledger.record_import(got.row.id, "imp")
        for name in sorted(os.listdir(Path(sys.argv[1]).parent)):
            print(name, oct(os.stat(Path(sys.argv[1]).parent / name).st_mode & 0o777))
        """
    )
    state = tmp_path / "fresh" / "state"
    out = subprocess.run(
        [sys.executable, "-c", script, str(state / "ledger.sqlite3")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    modes = dict(line.split() for line in out.splitlines())
    assert {"ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"} <= set(modes)
    assert set(modes.values()) == {"0o600"}
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700, "a parent the server created is private too"


def test_an_unwritable_state_folder_names_the_variable(tmp_path: Path) -> None:
    """A read-only folder, as an unprivileged user (root writes anywhere, so a root run drops to nobody)."""
    state = tmp_path / "ro"
    state.mkdir()
    state.chmod(0o555)
    tmp_path.chmod(0o755)
    script = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        from prolific_mcp.uploads.ledger import Ledger
        if os.getuid() == 0:  # after the imports: the interpreter's own files may be root's only
            os.setgid(65534)
            os.setuid(65534)
        try:
            Ledger(Path(sys.argv[1]))
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(state / "sub" / "ledger.sqlite3")],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert StateDirError.__name__ in out.stdout, out.stderr[-2000:]
    assert "PROLIFIC_MCP_STATE_DIR" in out.stdout and "permission denied" in out.stdout


def test_a_relative_ledger_path_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ledger = Ledger(Path("rel") / "ledger.sqlite3")
    assert _claim(ledger).won
    ledger.close()
    assert Ledger(Path("rel") / "ledger.sqlite3").recovery is None


def test_a_full_state_folder_names_the_cause_and_the_variable(tmp_path: Path) -> None:
    """A child process whose file size limit the ledger's files outgrow: the write fails as on a full disk."""
    script = textwrap.dedent(
        """
        import resource, signal, sys
        from pathlib import Path
        from prolific_mcp.uploads.ledger import Ledger, UploadKey
        ledger = Ledger(Path(sys.argv[1]))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        try:
            for i in range(5000):
                ledger.claim(UploadKey("o", "u", "d", f"{i:064d}", i), filename="f" * 500, local_path="/x" * 300,
                             fmt="jsonl", record_count=i)
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "state" / "ledger.sqlite3")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.startswith(StateDirError.__name__), out
    assert "free some space" in out and "PROLIFIC_MCP_STATE_DIR" in out


def test_a_reused_pid_is_not_taken_for_the_owner() -> None:
    host = socket.gethostname()
    parent = os.getppid()
    start = Path(f"/proc/{parent}/stat").read_bytes().rpartition(b")")[2].split()[19].decode()
    assert owner_state(f"{host}:{parent}@{start}") == "alive"
    assert owner_state(f"{host}:{parent}@{int(start) + 1}") == "dead", "same pid, another process"
    assert owner_state(f"{host}:{os.getpid()}@0") == "dead", "an earlier process that had this pid"
    assert owner_state(current_owner()) == "self"
    assert owner_state(f"another-host:{parent}@{start}") == "unknown"
    assert owner_state(None) == "unknown"
