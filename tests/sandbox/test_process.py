"""The sandbox as a child process: the command line, the ready line, stop, restart, and dying with its parent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import orjson
import pytest

from prolific_mcp.sandbox import SandboxProcess, SandboxProcessError
from prolific_mcp.sandbox.handshake import READY_LINE
from prolific_mcp.sandbox.process import PACKAGE_ROOT

from .support import DATASETS, create_dataset, get_dataset, import_and_wait, jsonl, record, wait_for


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    return env


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for init counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_start_stop_restart(tmp_path: Path) -> None:
    with SandboxProcess.start(tmp_path, pace="fast") as proc:
        assert proc.alive()
        assert proc.pid != os.getpid()
        with httpx2.Client(base_url=proc.url, headers={"Authorization": "Token t"}, timeout=10) as api:
            workspace_id = api.get("/api/v1/workspaces/").json()["results"][0]["id"]
            ds = create_dataset(api, workspace_id)
            import_and_wait(api, ds["id"], "a.jsonl", jsonl([record(1), record(2)]))
        with httpx2.Client(base_url=proc.url, headers={"Authorization": f"Bearer {proc.admin_token}"}) as admin:
            assert admin.get("/_sandbox/info").json()["state_dir"] == str(tmp_path.resolve())
        old_pid, old_url = proc.pid, proc.url
        proc.restart()
        assert proc.alive()
        assert proc.pid != old_pid
        assert proc.url == old_url
        with httpx2.Client(base_url=proc.url, headers={"Authorization": "Token t"}, timeout=10) as api:
            assert get_dataset(api, ds["id"])["total_datapoint_count"] == 2
        assert proc.stop() == 0
        assert not proc.alive()
    assert (tmp_path / "sandbox.log").read_text().count("sandbox ready at") == 2


def test_temporary_state_folder_is_removed() -> None:
    proc = SandboxProcess.start(pace="fast")
    folder = proc.state_dir
    assert folder.is_dir()
    proc.close()
    assert not proc.alive()
    assert not folder.exists()


def test_restart_falls_back_to_new_ports_when_taken(tmp_path: Path) -> None:
    with SandboxProcess.start(tmp_path, pace="fast") as proc:
        port = proc.port
        proc.stop()
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        try:
            proc.restart()
            assert proc.alive()
            assert proc.port != port
        finally:
            blocker.close()


def test_start_failure_reports_the_log(tmp_path: Path) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text('{"faults": [{"match": "nope"}]}')
    with pytest.raises(SandboxProcessError, match=r"(?s)exited \(code 2\).*METHOD glob"):
        SandboxProcess.start(tmp_path / "state", faults_file=bad)


def test_child_exits_when_its_parent_dies(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from prolific_mcp.sandbox import SandboxProcess\n"
        "p = SandboxProcess.start(Path(sys.argv[1]), pace='fast')\n"
        "print(p.pid, p.url, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline().decode().split()
        child_pid, url = int(line[0]), line[1]
        with httpx2.Client(timeout=5) as c:
            assert c.get(f"{url}/api/v1/users/me/", headers={"Authorization": "Token t"}).status_code == 200
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: True if gone(child_pid) else None, timeout=15, interval=0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdin is not None:
            parent.stdin.close()
        if parent.stdout is not None:
            parent.stdout.close()


def run_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "prolific_mcp.sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def test_cli_ready_line_faults_and_sigint(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_bytes(orjson.dumps({"faults": [{"match": "GET /api/v1/users/me/", "status": 503}]}))
    proc = run_cli(
        "--state-dir", str(tmp_path / "state"), "--faults", str(plan), "--admin-token", "adm", "--token", "t"
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().rstrip("\n")
        match = READY_LINE.match(line)
        assert match is not None, line
        assert line.startswith("Prolific sandbox ready at http://127.0.0.1:")
        assert match["state_dir"] == str((tmp_path / "state").resolve())
        assert match["admin"] == "(as configured)"
        with httpx2.Client(base_url=match["url"], headers={"Authorization": "Token t"}, timeout=5) as api:
            assert api.get("/api/v1/users/me/").status_code == 503
            assert api.get("/api/v1/users/me/").status_code == 200
            assert api.get("/api/v1/users/me/", headers={"Authorization": "Token other"}).status_code == 401
        with httpx2.Client(base_url=match["url"], headers={"Authorization": "Bearer adm"}, timeout=5) as admin:
            assert admin.get("/_sandbox/faults").json()["unused"] == []
        with httpx2.Client(timeout=5) as s3:
            assert s3.get(match["s3_url"] + "/").status_code == 403
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_cli_temporary_state_and_sigterm() -> None:
    proc = run_cli("--pace", "fast")
    try:
        assert proc.stdout is not None
        match = READY_LINE.match(proc.stdout.readline().rstrip("\n"))
        assert match is not None
        assert "a fresh temporary folder, deleted on exit" in match.group(0)
        assert len(match["admin"]) >= 20
        folder = Path(match["state_dir"])
        assert folder.is_dir()
        with httpx2.Client(base_url=match["url"], headers={"Authorization": f"Bearer {match['admin']}"}) as admin:
            assert admin.get("/_sandbox/info").json()["pace"] == "fast"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not folder.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_cli_errors(tmp_path: Path) -> None:
    missing = run_cli("--faults", str(tmp_path / "absent.json"))
    _, err = missing.communicate(timeout=20)
    assert missing.returncode == 2
    assert "cannot read the fault plan" in err
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        busy = run_cli("--port", str(taken.getsockname()[1]), "--state-dir", str(tmp_path / "s"))
        out, err = busy.communicate(timeout=20)
        assert busy.returncode == 1
        assert out == ""
        assert "cannot listen on 127.0.0.1" in err
        assert "Traceback" not in err, err
    finally:
        taken.close()


def test_cli_stdin_eof_stops_it(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "prolific_mcp.sandbox", "--state-dir", str(tmp_path), "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert READY_LINE.match(proc.stdout.readline().rstrip("\n"))
        started = time.monotonic()
        proc.stdin.close()
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_dataset_paths_work_through_the_process(tmp_path: Path) -> None:
    with SandboxProcess.start(tmp_path, pace="fast", token="fixed") as proc:
        with httpx2.Client(base_url=proc.url, headers={"Authorization": "Token fixed"}, timeout=10) as api:
            assert api.get(f"{DATASETS}/nope").status_code == 404
        with httpx2.Client(base_url=proc.url, headers={"Authorization": "Token other"}, timeout=10) as api:
            assert api.get(f"{DATASETS}/nope").status_code == 401
