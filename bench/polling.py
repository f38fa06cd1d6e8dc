"""Goal 5: how many status requests an upload makes while Prolific imports, and how late it notices the end.

The server's own watch loop (`UploadManager._watch`, with its `PollPlanner`) runs against a simulated import on a
virtual clock, so a 600 s import takes milliseconds and the figures are exact. The import is `queued` for a tenth
of its duration (at most 1 s), then `processing` with `processed_offset` rising steadily to its end, then
`complete`. The watch starts when the PUT ends (t = 0), as in a real upload, and knows the record count from the
pre-flight (a second set of runs without it: no rate-based prediction). The jitter is random: each duration runs
with many seeds. The reference is Prolific's CLI: a request at once, then one every 3 s.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import anyio
import anyio.lowlevel

from bench.common import Result
from prolific_mcp.api.models import ImportJob
from prolific_mcp.uploads.jobs import UploadJob, UploadManager, UploadPlan
from prolific_mcp.uploads.ledger import UploadKey

DURATIONS = (5.0, 60.0, 600.0)
RATE = 20_000
"""Records per second of the simulated import."""
CLI_INTERVAL = 3.0
MAX_LAG = 5.0


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()


@dataclass
class SimulatedImport:
    """The import's status at any time since the PUT ended."""

    duration: float

    @property
    def records(self) -> int:
        return int(self.duration * RATE)

    @property
    def queued(self) -> float:
        return min(1.0, self.duration / 10)

    def at(self, t: float) -> dict[str, Any]:
        base = {"import_id": "i", "dataset_id": "d"}
        if t >= self.duration:
            return {**base, "status": "complete", "accepted_count": self.records, "processed_offset": self.records}
        if t < self.queued:
            return {**base, "status": "queued"}
        share = (t - self.queued) / (self.duration - self.queued)
        return {**base, "status": "processing", "processed_offset": int(self.records * share)}


class FakeClient:
    """Answers `get_import` from the simulated import on the virtual clock, counting requests."""

    def __init__(self, simulated: SimulatedImport, clock: VirtualClock) -> None:
        self.simulated = simulated
        self.clock = clock
        self.requests = 0
        self.seen_at: float | None = None

    async def get_import(self, dataset_id: str, import_id: str) -> ImportJob:
        self.requests += 1
        job = ImportJob.model_validate(self.simulated.at(self.clock.now))
        if job.is_terminal and self.seen_at is None:
            self.seen_at = self.clock.now
        return job


async def watch_once(duration: float, seed: int, *, know_count: bool) -> tuple[int, float]:
    """(requests, lag) of the server's watch loop for one simulated import."""
    random.seed(seed)
    clock = VirtualClock()
    simulated = SimulatedImport(duration)
    client = FakeClient(simulated, clock)
    manager = UploadManager(cast(Any, client), cast(Any, None), clock=clock.time, sleep=clock.sleep)
    plan = UploadPlan(
        key=UploadKey("bench", "bench", "d", "0" * 64, 1),
        dataset_id="d",
        filename="data.jsonl",
        fmt="jsonl",
        size=1,
        record_count=simulated.records if know_count else None,
        opened=None,
        local_path=None,
    )
    job = UploadJob(plan, phase="watching", import_id="i")
    await manager._watch(job)
    assert client.seen_at is not None
    return client.requests, client.seen_at - duration


def cli(duration: float) -> tuple[int, float]:
    """Prolific's CLI: a request at t = 0, then every 3 s until the terminal status."""
    polls = math.floor(duration / CLI_INTERVAL) + 1 + (0 if duration % CLI_INTERVAL == 0 else 1)
    seen = (polls - 1) * CLI_INTERVAL
    return polls, seen - duration


def run(seeds: int) -> Result:
    rows: list[str] = []
    met = True
    summary: list[str] = []
    for know_count in (True, False):
        for duration in DURATIONS:
            results = [anyio.run(partial(watch_once, duration, s, know_count=know_count)) for s in range(seeds)]
            requests = [r for r, _ in results]
            lags = [lag for _, lag in results]
            cli_requests, cli_lag = cli(duration)
            mean = sum(requests) / len(requests)
            ok = max(requests) <= cli_requests if duration <= 5 else max(requests) < cli_requests
            ok = ok and max(lags) <= MAX_LAG
            met = met and ok
            label = "with" if know_count else "without"
            rows.append(
                f"| {duration:g} s | {label} | {mean:.1f} (max {max(requests)}) | {cli_requests} | "
                f"**{mean / cli_requests:.2f}×** | {sum(lags) / len(lags):.1f} s (max {max(lags):.1f} s) | "
                f"{cli_lag:.1f} s | {'met' if ok else '**not met**'} |"
            )
            if know_count:
                summary.append(f"{duration:g} s: {mean / cli_requests:.2f}×")
    return Result(
        5,
        "Polling cost while an import runs",
        "requests ≤ the CLI's (3 s poll) at 5 s, fewer at 60 s and 600 s; the terminal status noticed within 5 s",
        "; ".join(summary) + " of the CLI's requests",
        " / ".join(s.split(": ")[1] for s in summary),
        met,
        [
            f"The server's `UploadManager._watch` against a simulated import on a virtual clock ({seeds} jitter seeds "
            "per row; the goal is judged on the worst seed). With/without: whether the pre-flight record count is "
            "known (it always is for upload_file; without it there is no rate-based prediction). Lag: from the "
            "import's end to the request that sees it.",
            "",
            "| Import takes | Record count | Requests (mean) | CLI | Ratio | Lag | CLI lag | Goal |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ],
    )
