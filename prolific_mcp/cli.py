"""The `prolific-datasets-mcp` command: `sandbox` runs the local emulator, `demo` runs the main job on it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from prolific_mcp import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prolific-datasets-mcp",
        description="MCP server for Prolific AI Task Builder datasets (and its local sandbox).",
    )
    parser.add_argument("--version", action="version", version=f"prolific-datasets-mcp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "sandbox",
        help="run the local emulator of the Prolific datasets API and its upload store (see 'sandbox --help')",
        add_help=False,
    )
    demo = sub.add_parser(
        "demo",
        help="create a dataset on a fresh local sandbox, upload a sample file and explain what was rejected",
    )
    demo.add_argument("--keep", metavar="DIR", help="write the sample file and sandbox state here and keep them")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if args_list and args_list[0] == "sandbox":
        from prolific_mcp.sandbox.server import main as sandbox_main

        return sandbox_main(args_list[1:])
    args = parser.parse_args(args_list)
    if args.command == "demo":
        from prolific_mcp.demo import run_demo

        return run_demo(keep=args.keep)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
