"""Goal 8: time to outcome. `upload_file` from call to result against a floor client doing the same work with
nothing in between, both on one standalone sandbox at its default pace.

- The server: the real command over stdio (bench/fleet.py), in Prolific mode pointed at the sandbox's loopback URL.
- The floor (`fleet.floor_upload`): GET the upload URL, `curl -T` the file, then GET the import every 50 ms until
  a terminal status. Each run, upload_file and the floor alternate, each to a dataset of its own made beforehand
  through the API (outside the timing: upload_file is timed on an existing dataset, as an agent calls it).
- Where the time goes comes from the call's progress notifications (pre-flight → "asking for an upload URL", PUT
  → "uploading", PUT end → 50) and the import's terminal timestamp in the sandbox (`updated_at`, its wall clock).
- The lag from terminal status to result, over imports of several lengths: a sandbox whose processing is capped at
  a records/s rate (bench/slow_sandbox.py) and files of small records sized to the length wanted. The status
  requests each import cost are counted from the sandbox's request log, against Prolific's CLI (a request at once,
  then every 3 s). `quick` leaves this series out: its lags are those of the two files' imports.
- Requests over a 600 s import: bench/polling.py's virtual clock (goal 5) with the server's own watch loop.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from bench import fleet, polling
from bench.common import MB, Result, log, median

GOAL_SMALL = 1.3
GOAL_LARGE = 1.1
GOAL_LAG_MEDIAN = 1.0
GOAL_LAG_WORST = 2.0
GOAL_REQUESTS = 0.7
RATE = 2000.0
"""Records per second of the rate-capped sandbox for the lag series."""


@dataclass
class Call:
    """One upload_file call: times on perf_counter, and the terminal status's lag to the result."""

    started: float
    preflight_done: float
    put_started: float
    put_done: float
    ended: float
    terminal_lag: float
    """Seconds from the import's terminal status (the sandbox's own timestamp) to the result."""
    import_id: str
    status: str

    @property
    def total(self) -> float:
        return self.ended - self.started


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def upload_call(server: fleet.Server, sandbox: fleet.Sandbox, dataset_id: str, path: Path) -> Call:
    events: list[tuple[float, float, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((time.perf_counter(), progress, message or ""))

    started = time.perf_counter()
    out = await fleet.call(
        server,
        "upload_file",
        {"dataset_id": dataset_id, "path": str(path), "wait_seconds": 900},
        progress_callback=on_progress,
    )
    ended, ended_wall = time.perf_counter(), time.time()
    import_id = str(out.get("import_id"))
    job = await anyio.to_thread.run_sync(sandbox.get_import, dataset_id, import_id)
    terminal_wall = _wall(job["updated_at"])

    def first(test: Any, default: float) -> float:
        return next((t for t, p, m in events if test(p, m)), default)

    asking = first(lambda p, m: m.startswith("asking for an upload URL"), started)
    uploading = first(lambda p, m: m.startswith("uploading"), asking)
    put_done = first(lambda p, m: p >= 50, uploading)
    return Call(started, asking, uploading, put_done, ended, ended_wall - terminal_wall, import_id, str(out["status"]))


async def _side_by_side(files: list[Path], rounds: int, folder: Path) -> dict[Path, dict[str, Any]]:
    """Per file and round: the floor, upload_file on the server, and upload_file on the server with the earlier
    code (bench/baseline.py), each to a dataset of its own, after os.sync; who goes first turns by round."""
    out: dict[Path, dict[str, Any]] = {}
    with fleet.standalone_sandbox(folder) as sandbox:
        env = fleet.url_env(sandbox.url, folder / "state")
        before_env = fleet.url_env(sandbox.url, folder / "state-before")
        async with (
            fleet.stdio_server(env, folder / "home", folder / "server.log") as server,
            fleet.stdio_server(
                before_env, folder / "home-before", folder / "server-before.log", fleet.BASELINE_COMMAND
            ) as before,
        ):
            for warm_up in (server, before):
                warm = await anyio.to_thread.run_sync(sandbox.new_dataset, "warm-up")
                await upload_call(warm_up, sandbox, warm, files[0])
            for path in files:
                floors: list[dict[str, float]] = []
                calls: list[Call] = []
                earlier: list[Call] = []
                order = ("floor", "upload_file", "earlier")
                for r in range(rounds):
                    # Each starts once the disk has written back the last one's file and datapoints (os.sync), and
                    # who goes first turns by round: none always follows the same other's write-back.
                    for step in order[r % 3 :] + order[: r % 3]:
                        dataset = await anyio.to_thread.run_sync(sandbox.new_dataset, step)
                        await anyio.to_thread.run_sync(os.sync)
                        if step == "floor":
                            floors.append(await anyio.to_thread.run_sync(fleet.floor_upload, sandbox, dataset, path))
                        else:
                            who, into = (server, calls) if step == "upload_file" else (before, earlier)
                            into.append(await upload_call(who, sandbox, dataset, path))
                floor_times = [f["seen"] - f["started"] for f in floors]
                ratios = [c.total / f for c, f in zip(calls, floor_times, strict=True)]
                before_ratios = [c.total / f for c, f in zip(earlier, floor_times, strict=True)]
                out[path] = {
                    "floors": floors,
                    "calls": calls,
                    "earlier": earlier,
                    "floor": median(floor_times),
                    "ratio": median(ratios),
                    "before": median(before_ratios),
                }
                log(
                    f"  {path.name}: upload_file {median([c.total for c in calls]):.2f} s vs floor "
                    f"{median(floor_times):.2f} s: {median(ratios):.2f}x (earlier code "
                    f"{median([c.total for c in earlier]):.2f} s: {median(before_ratios):.2f}x)"
                )
    return out


async def _lags(lengths: tuple[float, ...], folder: Path) -> list[dict[str, Any]]:
    from bench import sandbox_import as imports

    rows: list[dict[str, Any]] = []
    with fleet.standalone_sandbox(folder, records_per_second=RATE) as sandbox:
        env = fleet.url_env(sandbox.url, folder / "state")
        async with fleet.stdio_server(env, folder / "home", folder / "server.log") as server:
            for length in lengths:
                records = int(length * RATE)
                path = await anyio.to_thread.run_sync(imports.data_file, records)
                dataset = await anyio.to_thread.run_sync(partial(sandbox.new_dataset, "lag", imports.SCHEMA))
                got = await upload_call(server, sandbox, dataset, path)
                requests = await anyio.to_thread.run_sync(sandbox.status_requests, got.import_id)
                watched = got.ended - got.put_done
                cli_requests, _ = polling.cli(max(0.0, watched - got.terminal_lag))
                rows.append(
                    {"length": length, "records": records, "call": got, "requests": requests, "cli": cli_requests}
                )
                log(f"  import of ~{length:g} s: lag {got.terminal_lag:.2f} s, {requests} status requests")
    return rows


def _requests_600(seeds: int) -> tuple[float, int]:
    runs = [anyio.run(partial(polling.watch_once, 600.0, s, know_count=True)) for s in range(seeds)]
    return sum(r for r, _ in runs) / len(runs), polling.cli(600.0)[0]


def run(small: Path, large: Path, rounds: int, lengths: tuple[float, ...], seeds: int) -> Result:
    with fleet.temp_folder("bench-outcome-") as tmp:
        sides = anyio.run(_side_by_side, [small, large], rounds, Path(tmp) / "a")
        lags = anyio.run(_lags, lengths, Path(tmp) / "b") if lengths else []
    mean_requests, cli_requests = _requests_600(seeds)
    request_ratio = mean_requests / cli_requests
    small_ratio, large_ratio = sides[small]["ratio"], sides[large]["ratio"]
    all_lags = [c.terminal_lag for side in sides.values() for c in side["calls"]]
    all_lags += [row["call"].terminal_lag for row in lags]
    lag_median, lag_worst = median(all_lags), max(all_lags)
    met = (
        small_ratio <= GOAL_SMALL
        and large_ratio <= GOAL_LARGE
        and lag_median <= GOAL_LAG_MEDIAN
        and lag_worst <= GOAL_LAG_WORST
        and request_ratio <= GOAL_REQUESTS
    )
    rows = []
    for path, side in sides.items():
        calls: list[Call] = side["calls"]
        floors = side["floors"]
        size = path.stat().st_size
        earlier: list[Call] = side["earlier"]
        rows.append(
            f"| {path.name} ({size / MB:,.0f} MB) | {side['floor']:.2f} s | "
            f"{median([c.total for c in earlier]):.2f} s ({side['before']:.2f}×) | "
            f"{median([c.total for c in calls]):.2f} s | **{side['ratio']:.2f}×** | "
            f"{median([c.preflight_done - c.started for c in earlier]):.2f} s → "
            f"{median([c.preflight_done - c.started for c in calls]):.2f} s | "
            f"{median([c.put_done - c.put_started for c in calls]):.2f} s / "
            f"{median([f['put'] - f['url'] for f in floors]):.2f} s | "
            f"{median([c.ended - c.put_done - c.terminal_lag for c in calls]):.2f} s / "
            f"{median([f['seen'] - f['put'] for f in floors]):.2f} s | "
            f"{median([c.terminal_lag for c in earlier]):.2f} s → {median([c.terminal_lag for c in calls]):.2f} s |"
        )
    lag_rows = []
    for row in lags:
        got: Call = row["call"]
        lag_rows.append(
            f"| ~{row['length']:g} s ({row['records']:,} records at {RATE:,.0f}/s) | "
            f"{got.ended - got.put_done - got.terminal_lag:.1f} s | **{got.terminal_lag:.2f} s** | "
            f"{row['requests']} | {row['cli']} |"
        )
    return Result(
        8,
        "Time to outcome: `upload_file` call → result vs a floor client (default pace)",
        f"1 MB ≤ {GOAL_SMALL}×, large file ≤ {GOAL_LARGE}× the floor; terminal → result ≤ 1 s median, ≤ 2 s worst; "
        f"requests over 600 s ≤ {GOAL_REQUESTS}× the CLI's",
        f"{small.name}: {small_ratio:.2f}× (earlier code {sides[small]['before']:.2f}×); {large.name}: "
        f"{large_ratio:.2f}× (earlier code {sides[large]['before']:.2f}×); lag {lag_median:.2f} s median, "
        f"{lag_worst:.2f} s worst; 600 s: {request_ratio:.2f}× the CLI's requests",
        f"{small_ratio:.2f}× / {large_ratio:.2f}×",
        met,
        [
            f"Median of {rounds} alternating runs per file (the ratio: the median of each run's pair). Each run "
            "starts once the disk has written back the one before (`os.sync`: every import writes the file and its "
            "datapoints), and which of the three goes first turns by round. The earlier "
            "code: the same server with the polling schedule, the scan's inline hash and the whole scan before the "
            "PUT of before this issue's changes (bench/baseline.py), in the same runs, against the same floor. The "
            "floor: the upload URL, `curl -T`, the import polled every 50 ms. Pre-flight: call → the first 'asking "
            "for an upload URL' notification (the dataset read and the scan; for a file of 64 MiB or more, its hash "
            "alone: its scan runs beside the PUT, which holds its last chunk until the scan has cleared the file, "
            "at its first record here, so the PUT column includes what the scan's CPU takes from it). Watch: PUT "
            "end → the terminal status (the sandbox's timestamp). Lag: terminal status → the call's result.",
            "",
            "| File | floor | upload_file, earlier code (ratio) | upload_file | ratio | pre-flight (earlier → now) | "
            "PUT (upload_file / curl) | PUT end → terminal (upload_file / floor) | terminal → result (earlier → "
            "now) |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *(
                [
                    "Imports of several lengths (a sandbox capped at a processing rate; status requests counted by "
                    "the sandbox; the CLI: a request at once, then every 3 s):",
                    "",
                    "| Import | PUT end → terminal | terminal → result | status requests | CLI's |",
                    "|---|---|---|---|---|",
                    *lag_rows,
                    "",
                ]
                if lag_rows
                else []
            ),
            f"Over a 600 s import (bench/polling.py's virtual clock, {seeds} seeds): {mean_requests:.1f} requests "
            f"against the CLI's {cli_requests}: **{request_ratio:.2f}×**.",
        ],
    )
