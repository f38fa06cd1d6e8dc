"""The MCP server in a process of its own, for the upload benchmarks: streamable HTTP on a loopback port, in
sandbox mode, pointed at a sandbox that is already running (so the sandbox's memory and CPU are not the server's).

    python -m bench.serve --sandbox-url URL --allow-dir DIR --state-dir DIR [--max-uploads N] [--preflight-first]

It is the server as `prolific-datasets-mcp --http` runs it (`build_server` and the guarded `http_app`), with
`sandbox_url` instead of a sandbox child and no bearer token (loopback only). Prints `ready <url>` once it
accepts connections, then serves until its standard input closes. With `--preflight-first`, every file's whole
pre-flight scan runs before its PUT (as for files under 64 MiB), so that goal 1 measures the PUT alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading

import anyio
import uvicorn

from prolific_mcp.operations import early_put
from prolific_mcp.server.app import build_server
from prolific_mcp.server.http import HttpOptions, http_app
from prolific_mcp.settings import load_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sandbox-url", required=True)
    parser.add_argument("--allow-dir", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--max-uploads", type=int, default=4)
    parser.add_argument("--preflight-first", action="store_true")
    args = parser.parse_args()
    if args.preflight_first:
        early_put.EARLY_PUT_MIN_BYTES = 1 << 62  # type: ignore[misc]
    settings = load_settings(
        {
            "PROLIFIC_MODE": "sandbox",
            "PROLIFIC_MCP_STATE_DIR": args.state_dir,
            "PROLIFIC_MCP_ALLOWED_DIRS": args.allow_dir,
            "PROLIFIC_MCP_MAX_UPLOADS": str(args.max_uploads),
            "HOME": args.state_dir,
        }
    )
    mcp = build_server(settings, sandbox_url=args.sandbox_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(http_app(mcp, HttpOptions(no_auth=True)), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)

    def stop_on_eof() -> None:
        with contextlib.suppress(OSError):
            while os.read(sys.stdin.fileno(), 65536):
                pass
        server.should_exit = True

    threading.Thread(target=stop_on_eof, daemon=True).start()

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:  # noqa: ASYNC110 (uvicorn exposes its readiness only as a flag)
                await anyio.sleep(0.01)
            print(f"ready http://127.0.0.1:{port}/mcp", flush=True)

    anyio.run(serve)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
