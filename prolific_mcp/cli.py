"""The `prolific-datasets-mcp` command.

With no command it serves MCP over stdio (or streamable HTTP with `--http`); `sandbox` runs the local emulator,
`demo` runs the main job on a fresh sandbox.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from prolific_mcp import __version__

if TYPE_CHECKING:
    import anyio

    from prolific_mcp.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prolific-datasets-mcp",
        description="MCP server for Prolific AI Task Builder datasets (stdio by default; see also the commands).",
    )
    parser.add_argument("--version", action="version", version=f"prolific-datasets-mcp {__version__}")
    parser.add_argument("--mode", choices=["auto", "sandbox", "prolific"], help="overrides PROLIFIC_MODE")
    parser.add_argument(
        "--allow-dir",
        action="append",
        metavar="DIR",
        help="a directory data files may be read from (repeatable; overrides PROLIFIC_MCP_ALLOWED_DIRS)",
    )
    parser.add_argument("--read-only", action="store_true", default=None, help="register no tool that writes")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    parser.add_argument("--no-auth", action="store_true", help="HTTP without the bearer token (loopback only)")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a Host a non-loopback bind accepts",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "sandbox",
        help="run the local emulator of the Prolific datasets API and its upload store ('sandbox --help')",
        add_help=False,
    )
    demo = sub.add_parser(
        "demo", help="create a dataset on a fresh local sandbox, upload a sample file, explain what was rejected"
    )
    demo.add_argument("--keep", metavar="DIR", help="write the sample file and the state here, and keep them")
    sub.add_parser(
        "doctor", help="check the token, the API, the workspaces and the folders; say how to fix what is wrong"
    )
    return parser


STOP_GRACE = 1.5
"""Seconds between SIGINT/SIGTERM and the exit at the latest, whatever is still running (docs/architecture.md
(Transports): the server ends within 2 s)."""


def _serve(args: argparse.Namespace) -> int:
    import anyio

    from prolific_mcp.logs import configure_logging
    from prolific_mcp.server.app import build_server, build_unconfigured_server
    from prolific_mcp.settings import ConfigurationError, load_settings

    configure_logging()  # before the server is built: the SDK then leaves the root logger alone
    stopped = threading.Event()
    settings: Settings | None = None
    try:
        settings = load_settings(mode=args.mode, allowed_dirs=args.allow_dir, read_only=args.read_only)
    except ConfigurationError as exc:
        mcp = build_unconfigured_server(str(exc), on_stopped=stopped.set)
        print(
            f"prolific-datasets-mcp: configuration error: {exc}\n"
            "  The server runs anyway and answers every tool call with this error; fix the setting in your MCP "
            "client's configuration for this server and restart it (`prolific-datasets-mcp doctor` checks it).",
            file=sys.stderr,
            flush=True,
        )
    else:
        mcp = build_server(settings, on_stopped=stopped.set)
    print(start_line(settings, args), file=sys.stderr, flush=True)
    if args.http:
        from prolific_mcp.server.http import HttpOptions, serve_http  # uvicorn: only for HTTP (start-up, goal 4)

        token = settings.http_token.get_secret_value() if settings and settings.http_token else None
        options = HttpOptions(args.host, args.port, token, args.no_auth, tuple(args.allowed_host))
        try:
            anyio.run(_until_signal, partial(serve_http, mcp, options), stopped, True)
        except ConfigurationError as exc:
            print(f"prolific-datasets-mcp: {exc}", file=sys.stderr)
            return 2
        return 0
    anyio.run(_until_signal, lambda stop: mcp.run_stdio_async(), stopped)
    return 0


def start_line(settings: Settings | None, args: argparse.Namespace) -> str:
    """The one line printed to stderr at start: version, mode, API origin, state directory, allowed directories."""
    transport = f"HTTP on {args.host}:{args.port}" if args.http else "stdio"
    head = f"prolific-datasets-mcp {__version__} ({transport})"
    if settings is None:
        return f"{head}: not configured (see the error above); every tool call answers with it"
    mode = settings.resolved_mode
    origin = "the local sandbox (nothing reaches Prolific)" if mode == "sandbox" else settings.api_url
    folders = ", ".join(str(p) for p in settings.effective_allowed_dirs()) or (
        "none (set PROLIFIC_MCP_ALLOWED_DIRS to read data files)"
    )
    return (
        f"{head}: mode {mode}, API {origin}, state directory {settings.state_dir}, "
        f"allowed directories {folders}{', read-only' if settings.read_only else ''}"
    )


async def _until_signal(
    main: Callable[[anyio.Event], Awaitable[None]], stopped: threading.Event, graceful: bool = False
) -> None:
    """Run `main(stop)` until it returns or SIGINT/SIGTERM arrives; then set `stop` (the HTTP server shuts down
    gracefully on it) and cancel `main` after a moment, and exit at most STOP_GRACE s after the signal.

    The SDK reads stdin in a worker thread that nothing can interrupt, so after a signal the server would otherwise
    wait for the client to close stdin. Once the lifespan has closed everything (`stopped`), or STOP_GRACE has
    passed, the process exits with status 0 without waiting for that thread.
    """
    import anyio

    failed: list[Exception] = []
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    logging.getLogger("prolific_mcp").info("%s received: stopping", signal.Signals(signum).name)
                    threading.Thread(target=_exit_once_stopped, args=(stopped,), daemon=True).start()
                    stop.set()
                    if graceful:  # the HTTP server stops by itself on `stop`; cancel only what is left after a while
                        await anyio.sleep(STOP_GRACE / 2)
                    tg.cancel_scope.cancel()
                    return

        async def run_main() -> None:
            try:
                await main(stop)
            except Exception as exc:  # raised below as it is, not wrapped in the task group's ExceptionGroup
                failed.append(exc)
            finally:
                tg.cancel_scope.cancel()

        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            tg.start_soon(on_signal)
        tg.start_soon(run_main)
    if failed:
        raise failed[0]


def _exit_once_stopped(stopped: threading.Event) -> None:
    stopped.wait(STOP_GRACE)
    logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "sandbox":
        from prolific_mcp.sandbox.cli import main as sandbox_main

        return sandbox_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    if args.command == "demo":
        from prolific_mcp.demo import run_demo

        return run_demo(keep=args.keep)
    if args.command == "doctor":
        from prolific_mcp.doctor import run_doctor

        return run_doctor(mode=args.mode, allow_dirs=args.allow_dir)
    return _serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
