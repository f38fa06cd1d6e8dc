"""`prolific-datasets-mcp doctor`: check the set-up the server would start with, and say how to fix what is wrong.

Checks, in order: the configuration and the mode; in sandbox mode, that the sandbox child starts; that the API
answers (reachability) and accepts the token (`users/me`); the workspaces (and PROLIFIC_WORKSPACE_ID); that the
state directory is writable; the allowed directories. Each line is `ok`, `warn` or `FAIL`, and every warning or
failure has a `fix:` line. The exit status is 1 when anything failed, else 0. The token is never printed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import anyio

from prolific_mcp import __version__
from prolific_mcp.api.client import ProlificClient
from prolific_mcp.api.errors import (
    ApiUnreachableError,
    AuthenticationError,
    PermissionDeniedError,
    ProlificError,
    RedirectRefusedError,
)
from prolific_mcp.api.models import Workspace
from prolific_mcp.redaction import redact
from prolific_mcp.settings import (
    ConfigurationError,
    Settings,
    is_loopback_url,
    load_settings,
    unsafe_default_dir_reason,
)
from prolific_mcp.uploads.ledger_health import health as ledger_health

Status = Literal["ok", "warn", "FAIL"]

FIX_AUTH = (
    "create a token in the Prolific app (Settings → API tokens) and set it as PROLIFIC_TOKEN in the MCP client's "
    "configuration (read from your environment, never pasted into a committed file)"
)
SANDBOX_TOKEN = "doctor"  # noqa: S105 (the local sandbox accepts any non-empty token)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: what was checked, how it went, and how to fix it when it did not go well."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """The API the checks talk to: Prolific (or PROLIFIC_URL), or a sandbox child started for the check."""

    url: str
    token: str | None
    sandbox: bool


class Report:
    """Collects the checks and prints each as it is made."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.checks: list[Check] = []

    def add(self, name: str, status: Status, detail: str, fix: str | None = None) -> Check:
        check = Check(name, status, redact(detail), redact(fix) if fix else None)
        self.checks.append(check)
        print(f"  {check.status:<5} {check.name:<13} {check.detail}", file=self.out, flush=True)
        if check.fix:
            print(f"  {'':<5} {'':<13} fix: {check.fix}", file=self.out, flush=True)
        return check

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]

    def close(self) -> int:
        failed = self.failed
        warned = [c for c in self.checks if c.status == "warn"]
        if failed:
            names = ", ".join(c.name for c in failed)
            print(f"\n{len(failed)} problem(s) ({names}): see the fix lines above.", file=self.out, flush=True)
            return 1
        tail = f" ({len(warned)} warning(s): see above)" if warned else ""
        print(f"\nEverything the server needs is in place{tail}.", file=self.out, flush=True)
        return 0


def run_doctor(
    mode: str | None = None,
    allow_dirs: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 20.0,
    out: TextIO | None = None,
) -> int:
    """Run every check against the settings from `environ` (default: the process environment); 1 if any failed."""
    report = Report(out or sys.stdout)
    print(f"prolific-datasets-mcp {__version__} doctor", file=report.out, flush=True)
    try:
        settings = load_settings(environ, mode=mode, allowed_dirs=list(allow_dirs) if allow_dirs else None)
    except ConfigurationError as exc:
        report.add("configuration", "FAIL", str(exc), "change the variables named above, then run doctor again")
        return report.close()
    env = dict(os.environ if environ is None else environ)
    working_dir = Path.cwd() if cwd is None else cwd

    _check_mode(report, settings, env)
    if settings.resolved_mode == "sandbox":
        _with_sandbox(report, settings, timeout)
    elif settings.api_token:
        anyio.run(_check_api, report, settings, Target(settings.api_url, settings.api_token, False), timeout)
    _check_state_dir(report, settings)
    _check_allowed_dirs(report, settings, working_dir, env)
    return report.close()


def _check_mode(report: Report, settings: Settings, env: Mapping[str, str]) -> None:
    if settings.resolved_mode == "sandbox":
        why = "PROLIFIC_MODE=sandbox" if settings.mode == "sandbox" else "no PROLIFIC_TOKEN is set"
        report.add("mode", "ok", f"sandbox ({why}): the server uses its local sandbox and nothing reaches Prolific")
        if settings.mode == "sandbox" and settings.api_token:
            report.add(
                "token",
                "warn",
                "PROLIFIC_TOKEN is set but PROLIFIC_MODE=sandbox, so the token is not used",
                "unset PROLIFIC_MODE (or set it to auto) to work on Prolific with this token",
            )
        return
    where = settings.api_url + ("" if settings.api_url_was_set else " (the default)")
    if not settings.api_token:
        report.add(
            "mode",
            "FAIL",
            f"PROLIFIC_MODE=prolific but no PROLIFIC_TOKEN is set: every tool that needs the API would fail ({where})",
            FIX_AUTH + "; or set PROLIFIC_MODE=sandbox to try things out locally",
        )
        return
    source = "PROLIFIC_TOKEN" if settings.token else "PROLIFIC_API_TOKEN"
    report.add("mode", "ok", f"Prolific at {where}, with the token from {source}")


def _with_sandbox(report: Report, settings: Settings, timeout: float) -> None:
    """Start a sandbox child in a temporary folder (never the server's own state) and run the API checks on it."""
    from prolific_mcp.sandbox.process import SandboxProcess, SandboxProcessError

    try:
        process = SandboxProcess.start(None, ready_timeout=max(timeout, 5.0))
    except (SandboxProcessError, OSError) as exc:
        report.add(
            "sandbox",
            "FAIL",
            f"the local sandbox did not start: {exc}",
            f"check that this Python ({sys.executable}) can run 'python -m prolific_mcp.sandbox'; reinstall "
            "prolific-datasets-mcp if it cannot",
        )
        return
    with process:
        report.add("sandbox", "ok", f"the local sandbox starts and answers (it ran at {process.url} for this check)")
        anyio.run(_check_api, report, settings, Target(process.url, SANDBOX_TOKEN, True), timeout)
    _report_shared_sandbox(report, settings)


def _report_shared_sandbox(report: Report, settings: Settings) -> None:
    """Whether the servers on this state directory have their shared sandbox running now (docs/sandbox.md)."""
    from prolific_mcp.sandbox.handshake import read_address

    address = read_address(settings.state_dir / "sandbox" / "server")
    if address is None:
        report.add("shared sandbox", "ok", "none running now: the first MCP server on this state directory starts it")
        return
    try:
        os.kill(address.pid, 0)
    except ProcessLookupError:
        report.add(
            "shared sandbox", "ok", "not running (it was stopped); the next MCP server call on this state starts it"
        )
        return
    except PermissionError:
        pass
    report.add("shared sandbox", "ok", f"the MCP servers on this state directory share the one at {address.url}")


async def _check_api(report: Report, settings: Settings, target: Target, seconds: float) -> None:
    try:
        client = ProlificClient(target.url, target.token, sandbox=target.sandbox or is_loopback_url(target.url))
    except ValueError as exc:
        report.add(
            "reachability", "FAIL", str(exc), "set PROLIFIC_URL to an https origin such as https://api.prolific.com"
        )
        return
    async with client:
        try:
            user = await client.get_me(deadline=client.deadline_in(seconds))
        except ApiUnreachableError as exc:
            report.add(
                "reachability",
                "FAIL",
                f"{target.url} did not answer: {exc}",
                "check the network connection and any proxy (HTTPS_PROXY); if PROLIFIC_URL is set, check it",
            )
            report.add("token", "warn", "not checked: the API did not answer", "fix reachability first")
            return
        except AuthenticationError:
            report.add("reachability", "ok", f"{target.url} answers")
            report.add("token", "FAIL", "the API refused the token (401 on users/me)", FIX_AUTH)
            return
        except PermissionDeniedError:
            report.add("reachability", "ok", f"{target.url} answers")
            report.add(
                "token",
                "FAIL",
                "the token is valid but may not read the account (403 on users/me)",
                "use a token of a researcher account with access to AI Task Builder",
            )
            return
        except RedirectRefusedError as exc:
            report.add(
                "reachability", "FAIL", str(exc), "set PROLIFIC_URL to the API's origin, which does not redirect"
            )
            return
        except ProlificError as exc:
            report.add(
                "reachability",
                "FAIL",
                f"users/me failed: {exc}",
                "try again in a minute; if it persists, check Prolific's status page or PROLIFIC_URL",
            )
            return
        report.add("reachability", "ok", f"{target.url} answers")
        if target.sandbox:
            report.add("token", "ok", f"not needed: the sandbox accepts any token (account {user.id})")
        else:
            report.add("token", "ok", f"accepted: users/me answered for account {user.id}")
        try:
            workspaces = await client.list_workspaces(deadline=client.deadline_in(seconds))
        except ProlificError as exc:
            report.add("workspaces", "FAIL", f"listing workspaces failed: {exc}", "try again; check the token's access")
            return
        _judge_workspaces(report, settings, workspaces)


def _judge_workspaces(report: Report, settings: Settings, workspaces: list[Workspace]) -> None:
    ids = [w.id for w in workspaces]
    listing = ", ".join(f"{w.id} ({w.title})" if w.title else w.id for w in workspaces[:10])
    if not workspaces:
        report.add(
            "workspaces",
            "FAIL",
            "the account has no workspace, so create_dataset has nowhere to put a dataset",
            "create a workspace in the Prolific app, then run doctor again",
        )
    elif settings.workspace_id and settings.workspace_id not in ids:
        report.add(
            "workspaces",
            "FAIL",
            f"PROLIFIC_WORKSPACE_ID={settings.workspace_id} is not one of this account's workspaces: {listing}",
            "set PROLIFIC_WORKSPACE_ID to one of the ids listed, or unset it",
        )
    elif settings.workspace_id:
        report.add("workspaces", "ok", f"{len(ids)} workspace(s); new datasets go to {settings.workspace_id}")
    elif len(ids) == 1:
        report.add("workspaces", "ok", f"one workspace ({listing}); new datasets go there")
    elif settings.resolved_mode == "sandbox":
        # The sandbox's second workspace has no typed datasets (V3 only); the server uses the default, listed first.
        report.add(
            "workspaces", "ok", f"{len(ids)} sandbox workspaces ({listing}); new datasets go to the first, its default"
        )
    else:
        report.add(
            "workspaces",
            "warn",
            f"{len(ids)} workspaces and no PROLIFIC_WORKSPACE_ID: create_dataset then needs workspace_id ({listing})",
            "set PROLIFIC_WORKSPACE_ID to the workspace new datasets should go to",
        )


def _check_state_dir(report: Report, settings: Settings) -> None:
    folder = settings.state_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-", delete=True) as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as exc:
        report.add(
            "state",
            "FAIL",
            f"the state directory {folder} is not writable ({exc.strerror or exc})",
            "set PROLIFIC_MCP_STATE_DIR to a folder you can write to (the ledger and sandbox state live there)",
        )
        return
    report.add("state", "ok", f"{folder} is writable (the upload ledger and the sandbox state live there)")
    for path in sorted(folder.glob("*/ledger.sqlite3")):  # one ledger per API origin (and the sandbox's)
        state, sentence = ledger_health(path)
        if state == "damaged":
            report.add("ledger", "warn", sentence, "nothing to do: the server replaces it when it starts")
        elif state == "unusable":
            report.add("ledger", "FAIL", sentence, "set PROLIFIC_MCP_STATE_DIR to a folder you can write to")
        else:
            report.add("ledger", "ok", sentence)


def _check_allowed_dirs(report: Report, settings: Settings, cwd: Path, env: Mapping[str, str]) -> None:
    configured = settings.allowed_dirs
    if configured is None:
        reason = unsafe_default_dir_reason(cwd, env)
        if reason is not None:
            report.add(
                "allowed dirs",
                "warn",
                f"PROLIFIC_MCP_ALLOWED_DIRS is not set and the working directory {cwd} is not used ({reason}): "
                "upload_file and validate_file can then read no file by path",
                "set PROLIFIC_MCP_ALLOWED_DIRS (or --allow-dir) to the folders that hold your data files",
            )
        else:
            report.add(
                "allowed dirs",
                "ok",
                f"not set, so the working directory {cwd} (an MCP client starts the server in its own working "
                "directory: set PROLIFIC_MCP_ALLOWED_DIRS to be sure)",
            )
        return
    if not configured:
        report.add(
            "allowed dirs",
            "warn",
            "PROLIFIC_MCP_ALLOWED_DIRS is set but empty: no file can be read by path "
            "(upload_file with content still works)",
            "set PROLIFIC_MCP_ALLOWED_DIRS to the folders that hold your data files",
        )
        return
    for raw in configured:
        path = Path(os.path.realpath(raw))
        if not path.exists():
            report.add(
                "allowed dirs",
                "FAIL",
                f"{raw} does not exist",
                "create it, or correct PROLIFIC_MCP_ALLOWED_DIRS / --allow-dir",
            )
        elif not path.is_dir():
            report.add(
                "allowed dirs",
                "FAIL",
                f"{raw} is not a directory",
                "name the folder that holds the file, not the file itself",
            )
        elif not os.access(path, os.R_OK | os.X_OK):
            report.add("allowed dirs", "FAIL", f"{raw} cannot be read", "give your user read access to it")
        elif not os.access(path, os.W_OK):
            report.add(
                "allowed dirs",
                "warn",
                f"{raw} is readable but not writable: rejected-record files cannot be written beside your files",
                "make it writable if you want the <name>.rejected.<ext> files",
            )
        else:
            report.add("allowed dirs", "ok", f"{path} can be read and written")
