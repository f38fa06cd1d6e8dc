"""The sandbox's command line: `prolific-datasets-mcp sandbox ...` and `python -m prolific_mcp.sandbox ...`.

It prints one ready line to stdout when both ports answer (`handshake.READY_LINE` parses it), logs to stderr, and
runs until SIGINT or SIGTERM, or, with --parent-pid / --exit-on-stdin-eof, until the process that started it goes
away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from prolific_mcp.logs import configure_logging
from prolific_mcp.sandbox.config import DEFAULT_MAX_OBJECT_SIZE, DEFAULT_URL_LIFETIME, Pace, SandboxConfig
from prolific_mcp.sandbox.faults import FaultPlan, FaultPlanError
from prolific_mcp.sandbox.handshake import (
    ADMIN_TOKEN_ENV,
    CONFIGURED_ADMIN,
    READY_PREFIX,
    TEMP_NOTE,
    TOKEN_ENV,
    USERS_LOCK,
    SandboxAddress,
    remove_address,
    try_lock,
    write_address,
)
from prolific_mcp.sandbox.runtime import SWITCH_INTERVAL, SandboxServer, SandboxStartError, load_fault_file

log = logging.getLogger("prolific_mcp.sandbox")

USERS_POLL_SECONDS = 0.5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prolific-datasets-mcp sandbox",
        description=(
            "Run the local emulator of Prolific's AI Task Builder datasets API and its presigned-upload store "
            "(fake S3), on 127.0.0.1. Nothing reaches Prolific."
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="API port (default 0: an ephemeral port)")
    parser.add_argument("--s3-port", type=int, default=0, help="fake S3 port (default 0: an ephemeral port)")
    parser.add_argument(
        "--state-dir", type=Path, help="state folder (kept between runs); default: a fresh temporary folder"
    )
    parser.add_argument("--faults", type=Path, metavar="PLAN.json", help="a fault plan to start with (docs/sandbox.md)")
    parser.add_argument(
        "--pace",
        choices=("default", "fast"),
        default="default",
        help="default: imports stay >=0.3 s queued and >=0.5 s processing; fast: no waiting",
    )
    parser.add_argument("--token", help=f"accept only this API token (default: any non-empty token; env {TOKEN_ENV})")
    parser.add_argument(
        "--admin-token", help=f"bearer token of the /_sandbox/ admin routes (default: generated; env {ADMIN_TOKEN_ENV})"
    )
    parser.add_argument(
        "--url-lifetime", type=float, default=DEFAULT_URL_LIFETIME, help="seconds an upload URL stays valid (900)"
    )
    parser.add_argument(
        "--max-object-size", type=int, default=DEFAULT_MAX_OBJECT_SIZE, help="largest PUT in bytes (5 GiB)"
    )
    parser.add_argument(
        "--store-only",
        action="store_true",
        help="store uploaded files but never process their imports (they stay queued): for benchmarks of the wire",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument(
        "--parent-pid", type=int, help="exit when the process with this id is no longer this process's parent"
    )
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="exit when standard input is closed (the parent went away)"
    )
    parser.add_argument(
        "--shared",
        action="store_true",
        help="run as the shared sandbox of the MCP servers on this state folder: write address.json there once "
        "ready, exit once no server holds users.lock (docs/sandbox.md)",
    )
    parser.add_argument(
        "--lock-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for the state folder's lock (a sandbox that is stopping) instead of failing at once",
    )
    return parser


def config_from_args(args: argparse.Namespace, state_dir: Path, admin_token: str | None) -> SandboxConfig:
    """The SandboxConfig the command line asks for (ValueError says what is wrong)."""
    fields: dict[str, Any] = {
        "state_dir": state_dir,
        "pace": Pace.parse(args.pace),
        "token": args.token or os.environ.get(TOKEN_ENV) or None,
        "port": args.port,
        "s3_port": args.s3_port,
        "url_lifetime": args.url_lifetime,
        "max_object_size": args.max_object_size,
        "access_log": args.access_log,
        "store_only": args.store_only,
        "lock_wait": args.lock_wait,
    }
    if admin_token is not None:
        fields["admin_token"] = admin_token
    return SandboxConfig(**fields)


def ready_line(server: SandboxServer, *, temporary: bool, admin_generated: bool) -> str:
    """The line printed on stdout once the sandbox answers (READY_LINE parses it)."""
    note = f", {TEMP_NOTE}" if temporary else ""
    admin = server.config.admin_token if admin_generated else CONFIGURED_ADMIN
    return (
        f"{READY_PREFIX}{server.url} (fake S3 at {server.s3_url}, state in {server.config.state_dir}{note}; "
        f"admin token {admin})"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox from the command line until SIGINT/SIGTERM; 0 on a clean stop, 1 or 2 on errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        plan = load_fault_file(args.faults) if args.faults is not None else FaultPlan()
    except FaultPlanError as exc:
        print(f"prolific sandbox: {exc}", file=sys.stderr)
        return 2
    temporary = args.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="prolific-sandbox-")) if temporary else args.state_dir
    admin_token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None
    try:
        config = config_from_args(args, state_dir.resolve(), admin_token)
    except ValueError as exc:
        print(f"prolific sandbox: {exc}", file=sys.stderr)
        return 2
    server = SandboxServer(config, faults=plan)

    def on_ready(s: SandboxServer) -> None:
        if args.shared:
            address = SandboxAddress(os.getpid(), s.url, s.s3_url, config.token or "", config.admin_token)
            write_address(config.state_dir, address)
        print(ready_line(s, temporary=temporary, admin_generated=admin_token is None), flush=True)
        if args.shared:  # whoever started it may go away: nothing more is written to its pipe
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    if args.shared and config.token is None:
        print(f"prolific sandbox: --shared needs a token ({TOKEN_ENV} or --token)", file=sys.stderr)
        return 2
    sys.setswitchinterval(SWITCH_INTERVAL)  # API requests answered promptly while an import thread runs
    try:
        asyncio.run(_run_cli(server, on_ready, args))
    except SandboxStartError as exc:
        print(f"prolific sandbox: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.shared:
            remove_address(config.state_dir, os.getpid())
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0


async def _run_cli(server: SandboxServer, on_ready: Callable[[SandboxServer], None], args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, server.request_stop)
        except (NotImplementedError, RuntimeError):  # Windows
            signal.signal(sig, lambda *_: server.request_stop())
    if args.exit_on_stdin_eof:
        threading.Thread(target=_watch_stdin, args=(server,), name="stdin-watch", daemon=True).start()
    failed: list[SandboxStartError] = []
    async with anyio.create_task_group() as tg:
        if args.parent_pid is not None:
            tg.start_soon(_watch_parent, server, args.parent_pid)
        if args.shared:
            tg.start_soon(_watch_users, server, server.config.state_dir)
        try:
            await server.serve(on_ready)
        except SandboxStartError as exc:  # raised below as it is, not inside the task group's ExceptionGroup
            failed.append(exc)
        tg.cancel_scope.cancel()
    if failed:
        raise failed[0]


def _watch_stdin(server: SandboxServer) -> None:
    # os.read on the descriptor: a daemon thread blocked in sys.stdin.buffer would hold its lock at exit.
    with contextlib.suppress(OSError, ValueError):
        fd = sys.stdin.fileno()
        while os.read(fd, 65536):
            pass
    log.info("standard input closed: stopping")
    server.request_stop()


async def _watch_parent(server: SandboxServer, parent_pid: int) -> None:
    # Nothing signals a parent's death to its child: poll (the stdin watch usually notices first).
    while os.getppid() == parent_pid:  # noqa: ASYNC110
        await anyio.sleep(0.5)
    log.info("parent process %d went away: stopping", parent_pid)
    server.request_stop()


async def _watch_users(server: SandboxServer, folder: Path) -> None:
    """The shared sandbox stops once no MCP server holds its shared lock on users.lock (the last one has exited,
    however it ended). Its address is removed while the lock is held, so a server arriving then starts a new one."""
    while True:
        await anyio.sleep(USERS_POLL_SECONDS)
        fd = try_lock(folder / USERS_LOCK)
        if fd is not None:
            try:
                remove_address(folder, os.getpid())
                log.info("no MCP server uses this sandbox any more: stopping")
                server.request_stop()
            finally:
                os.close(fd)
            return
