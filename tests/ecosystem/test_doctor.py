"""`prolific-datasets-mcp doctor`: every check, against real sandboxes (one that checks the token) and real folders."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import prolific_mcp
from prolific_mcp.doctor import run_doctor
from prolific_mcp.sandbox.process import SandboxProcess

GOOD_TOKEN = "doctor-test-token-0123456789"
REPO_ROOT = Path(prolific_mcp.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checking_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """A sandbox that accepts only GOOD_TOKEN, standing in for Prolific."""
    with SandboxProcess.start(tmp_path_factory.mktemp("prolific"), token=GOOD_TOKEN) as process:
        yield process


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def env_for(tmp_path: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "HOME": str(tmp_path),
        "PROLIFIC_MCP_STATE_DIR": str(tmp_path / "state"),
        "PROLIFIC_MCP_ALLOWED_DIRS": str(data_dir),
        **extra,
    }


def doctor(env: dict[str, str], cwd: Path, **kwargs: object) -> tuple[int, str]:
    out = io.StringIO()
    code = run_doctor(environ=env, cwd=cwd, timeout=5.0, out=out, **kwargs)  # type: ignore[arg-type]
    return code, out.getvalue()


def line(report: str, name: str) -> str:
    """The report line of one check (the first, if the check has several)."""
    for text in report.splitlines():
        status, _, rest = text.strip().partition(" ")
        if status in ("ok", "warn", "FAIL") and rest.lstrip().startswith(name + " "):
            return text
    raise AssertionError(f"no {name!r} line in:\n{report}")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sandbox_mode_starts_the_sandbox_and_passes(tmp_path: Path, data_dir: Path) -> None:
    code, report = doctor(env_for(tmp_path, data_dir), data_dir)
    assert code == 0, report
    assert "sandbox (no PROLIFIC_TOKEN is set)" in line(report, "mode")
    for name in ("sandbox", "reachability", "token", "workspaces", "state", "allowed dirs"):
        assert line(report, name).lstrip().startswith("ok"), report
    assert "FAIL" not in report
    assert "Everything the server needs is in place." in report
    assert (tmp_path / "state").is_dir()


def test_a_good_token_is_accepted_on_the_api(tmp_path: Path, data_dir: Path, checking_sandbox: SandboxProcess) -> None:
    env = env_for(tmp_path, data_dir, PROLIFIC_TOKEN=GOOD_TOKEN, PROLIFIC_URL=checking_sandbox.url)
    code, report = doctor(env, data_dir)
    assert code == 0, report
    assert f"Prolific at {checking_sandbox.url}" in line(report, "mode")
    assert "accepted: users/me answered" in line(report, "token")
    # Prolific mode against the sandbox's two workspaces (typed, and without typed datasets): a choice to make.
    assert "2 workspaces and no PROLIFIC_WORKSPACE_ID" in line(report, "workspaces")
    assert "sandbox" not in line(report, "token")
    assert GOOD_TOKEN not in report


def test_a_refused_token_fails_with_how_to_fix_it(
    tmp_path: Path, data_dir: Path, checking_sandbox: SandboxProcess
) -> None:
    wrong = "wrong-token-abcdefghijklmnop"
    env = env_for(tmp_path, data_dir, PROLIFIC_TOKEN=wrong, PROLIFIC_URL=checking_sandbox.url)
    code, report = doctor(env, data_dir)
    assert code == 1, report
    assert line(report, "reachability").lstrip().startswith("ok")
    assert line(report, "token").lstrip().startswith("FAIL")
    assert "401" in report
    assert "fix: create a token in the Prolific app" in report
    assert "1 problem(s) (token)" in report
    assert wrong not in report


def test_an_unreachable_api_fails_reachability(tmp_path: Path, data_dir: Path) -> None:
    env = env_for(tmp_path, data_dir, PROLIFIC_TOKEN=GOOD_TOKEN, PROLIFIC_URL=f"http://127.0.0.1:{closed_port()}")
    code, report = doctor(env, data_dir)
    assert code == 1, report
    assert line(report, "reachability").lstrip().startswith("FAIL")
    assert "not checked" in line(report, "token")
    assert "fix: check the network connection" in report


def test_a_workspace_id_that_is_not_the_accounts_fails(
    tmp_path: Path, data_dir: Path, checking_sandbox: SandboxProcess
) -> None:
    env = env_for(
        tmp_path,
        data_dir,
        PROLIFIC_TOKEN=GOOD_TOKEN,
        PROLIFIC_URL=checking_sandbox.url,
        PROLIFIC_WORKSPACE_ID="0123456789abcdef01234567",
    )
    code, report = doctor(env, data_dir)
    assert code == 1, report
    assert "is not one of this account's workspaces" in line(report, "workspaces")
    assert "fix: set PROLIFIC_WORKSPACE_ID to one of the ids listed" in report


def test_prolific_mode_without_a_token_fails(tmp_path: Path, data_dir: Path) -> None:
    code, report = doctor(env_for(tmp_path, data_dir, PROLIFIC_MODE="prolific"), data_dir)
    assert code == 1, report
    assert line(report, "mode").lstrip().startswith("FAIL")
    assert "PROLIFIC_MODE=sandbox" in report


def test_a_configuration_error_names_the_variables_and_no_value(tmp_path: Path, data_dir: Path) -> None:
    env = env_for(tmp_path, data_dir, PROLIFIC_TOKEN="first-secret-value", PROLIFIC_API_TOKEN="second-secret-value")
    code, report = doctor(env, data_dir)
    assert code == 1, report
    assert "PROLIFIC_TOKEN and PROLIFIC_API_TOKEN" in line(report, "configuration")
    assert "secret-value" not in report


def test_a_state_directory_that_cannot_be_created_fails(tmp_path: Path, data_dir: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder should be")
    env = env_for(tmp_path, data_dir, PROLIFIC_MCP_STATE_DIR=str(blocker / "state"))
    code, report = doctor(env, data_dir, mode="sandbox")
    assert code == 1, report
    assert line(report, "state").lstrip().startswith("FAIL")
    assert "fix: set PROLIFIC_MCP_STATE_DIR" in report


def test_allowed_directories_are_checked_one_by_one(tmp_path: Path, data_dir: Path) -> None:
    a_file = tmp_path / "reviews.jsonl"
    a_file.write_text("{}\n")
    missing = tmp_path / "missing"
    dirs = os.pathsep.join([str(data_dir), str(missing), str(a_file)])
    code, report = doctor(env_for(tmp_path, data_dir, PROLIFIC_MCP_ALLOWED_DIRS=dirs), data_dir)
    assert code == 1, report
    assert f"{data_dir.resolve()} can be read and written" in report
    assert f"{missing} does not exist" in report
    assert f"{a_file} is not a directory" in report
    assert "2 problem(s) (allowed dirs, allowed dirs)" in report


def test_an_unsafe_working_directory_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PROLIFIC_MCP_STATE_DIR": str(tmp_path / "state")}
    code, report = doctor(env, tmp_path)
    assert code == 0, report
    assert "it is the home directory itself" in line(report, "allowed dirs")
    assert line(report, "allowed dirs").lstrip().startswith("warn")
    assert "fix: set PROLIFIC_MCP_ALLOWED_DIRS" in report


def _cli(args: list[str], tmp_path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
        "PROLIFIC_MCP_STATE_DIR": str(tmp_path / "state"),
    }
    return subprocess.run(
        [sys.executable, "-m", "prolific_mcp", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_line_exit_status_follows_the_report(tmp_path: Path, data_dir: Path) -> None:
    good = _cli(["--allow-dir", str(data_dir), "doctor"], tmp_path, data_dir)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "prolific-datasets-mcp 0.1.0 doctor" in good.stdout
    bad = _cli(["--allow-dir", str(tmp_path / "nowhere"), "doctor"], tmp_path, data_dir)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "does not exist" in bad.stdout
    assert bad.stderr == ""
