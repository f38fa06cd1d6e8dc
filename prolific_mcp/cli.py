"""The `prolific-datasets-mcp` command.

With no command it serves MCP over stdio (or streamable HTTP with `--http`); `sandbox` runs the local emulator,
`demo` runs the main job on a fresh sandbox.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from prolific_mcp import __version__


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


def _serve(args: argparse.Namespace) -> int:
    import anyio

    from prolific_mcp.server.app import build_server
    from prolific_mcp.server.http import HttpOptions, serve_http
    from prolific_mcp.settings import ConfigurationError, load_settings

    try:
        settings = load_settings(mode=args.mode, allowed_dirs=args.allow_dir, read_only=args.read_only)
    except ConfigurationError as exc:
        print(f"prolific-datasets-mcp: {exc}", file=sys.stderr)
        return 2
    mcp = build_server(settings)
    logging.getLogger().handlers[:] = [logging.StreamHandler(sys.stderr)]
    if not args.http:
        mcp.run()
        return 0
    token = settings.http_token.get_secret_value() if settings.http_token else None
    options = HttpOptions(args.host, args.port, token, args.no_auth, tuple(args.allowed_host))
    try:
        anyio.run(serve_http, mcp, options)
    except ConfigurationError as exc:
        print(f"prolific-datasets-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


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
