"""Goal 4: start-up. Spawning the server over stdio until its `tools/list` reply, against the smallest
`MCPServer` with one tool (bench/minimal_server.py) started the same way.

Each run: a fresh temporary home and state folder, the SDK's `Client` with `StdioServerParameters` (the
interpreter running this suite), timed from the spawn to the `tools/list` result (the initialize handshake
included, as a client sees it). The two alternate, run after run. The server runs as configured out of the box:
no token, so sandbox mode, where it also starts the sandbox child in the background; a second set of runs has a
token (Prolific mode: no child).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from bench.common import ROOT, Result, log, median

GOAL = 1.3
MINIMAL = ROOT / "bench" / "minimal_server.py"


def server_command() -> tuple[str, list[str], str]:
    """(command, args, how it is shown): the installed `prolific-datasets-mcp` script when there is one."""
    script = Path(sys.executable).parent / "prolific-datasets-mcp"
    if script.exists():
        return str(script), [], "prolific-datasets-mcp (the installed script)"
    return sys.executable, ["-m", "prolific_mcp"], "python -m prolific_mcp (the package is not installed here)"


async def spawn_to_tools_list(command: str, args: list[str], extra_env: dict[str, str]) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": tmp,
            "PROLIFIC_MCP_STATE_DIR": str(Path(tmp) / "state"),
            "PROLIFIC_MCP_ALLOWED_DIRS": tmp,
            "PYTHONPATH": str(ROOT),
            **extra_env,
        }
        params = StdioServerParameters(command=command, args=args, env=env, cwd=tmp)
        started = time.perf_counter()
        async with Client(params) as client:
            tools = await client.list_tools()
            elapsed = time.perf_counter() - started
        return elapsed, len(tools.tools)


def run(rounds: int) -> Result:
    command, args, shown = server_command()
    kinds = {
        "minimal": (sys.executable, [str(MINIMAL)], {}),
        "sandbox": (command, args, {}),
        "prolific": (command, args, {"PROLIFIC_TOKEN": "bench-token", "PROLIFIC_URL": "http://127.0.0.1:9"}),
    }
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    tools: dict[str, int] = {}
    for cmd, argv, env in kinds.values():
        anyio.run(spawn_to_tools_list, cmd, argv, env)  # warm-up: byte-compiled files, the disk cache
    for _ in range(rounds):
        for kind, (cmd, argv, env) in kinds.items():
            elapsed, tools[kind] = anyio.run(spawn_to_tools_list, cmd, argv, env)
            times[kind].append(elapsed)
    base = median(times["minimal"])
    # Each round's own ratio, its runs side by side, then their median (as goals 1 and 8 do): a load that comes and
    # goes on the shared machine then weighs on both of a pair instead of on whichever ran more often under it.
    ratio = median([ours / ref for ours, ref in zip(times["sandbox"], times["minimal"], strict=True)])
    ratio_prolific = median([ours / ref for ours, ref in zip(times["prolific"], times["minimal"], strict=True)])
    of_medians = median(times["sandbox"]) / base
    log(f"  start-up: {ratio:.2f}x the minimal server (ratio of the medians: {of_medians:.2f}x)")
    return Result(
        4,
        "Start-up: spawn over stdio → `tools/list` reply",
        f"≤ {GOAL}× a minimal `MCPServer` with one tool",
        f"{median(times['sandbox']) * 1000:,.0f} ms vs {base * 1000:,.0f} ms",
        f"{ratio:.2f}×",
        ratio <= GOAL,
        [
            f"{rounds} rounds (after one warm-up run each); each round runs the three one after the other. The ratio "
            "is the median of the rounds' own ratios (each against the minimal server of its round); the times are "
            f"medians, and their ratio is shown beside it. Server: {shown}.",
            "",
            "| Server | tools | spawn → `tools/list` | vs minimal (median of the rounds) | ratio of the medians |",
            "|---|---|---|---|---|",
            f"| minimal `MCPServer`, one tool | {tools['minimal']} | {base * 1000:,.0f} ms | 1.00× | 1.00× |",
            f"| prolific-datasets-mcp, no token (sandbox mode: starts the sandbox child in the background) | "
            f"{tools['sandbox']} | {median(times['sandbox']) * 1000:,.0f} ms | **{ratio:.2f}×** | {of_medians:.2f}× |",
            f"| prolific-datasets-mcp with a token (Prolific mode) | {tools['prolific']} | "
            f"{median(times['prolific']) * 1000:,.0f} ms | {ratio_prolific:.2f}× | "
            f"{median(times['prolific']) / base:.2f}× |",
        ],
    )
