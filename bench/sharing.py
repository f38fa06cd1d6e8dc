"""Goal 9: one sandbox, many server processes. Three servers share one sandbox and do 5 uploads each, against one
server doing all 15; and one server's `get_dataset` while another uploads a large file, against its idle latency.

Each server is the real command over stdio (bench/fleet.py), all on one state directory as clients start them.
How they share the sandbox (fleet.py): **shared** when the server supports it (sandbox mode, one state directory:
if the first three servers cannot all answer so, the run falls back), else **url** (a standalone sandbox at the
default pace, every server pointed at it); `BENCH_SHARING=url` or `=shared` forces one. Every upload goes to a
dataset of its own and is followed to its result (the import included). The latency is measured on two of the three
servers of the first round, after their uploads: one call every CADENCE s, idle (before and after) and during
the other's upload alike.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from bench import fleet
from bench.common import DATASET_FIELDS, MB, Result, log, median

GOAL_THROUGHPUT = 0.8
GOAL_LATENCY = 1.5
CADENCE = 0.05
"""Seconds between two `get_dataset` calls of the latency measure, idle and during the upload alike."""
PROCESSES = 3
EACH = 5


@dataclass
class Fleet:
    form: str
    servers: list[fleet.Server]
    sandbox: fleet.Sandbox | None


@contextlib.asynccontextmanager
async def servers(count: int, folder: Path, shared: bool) -> AsyncIterator[Fleet]:
    async with contextlib.AsyncExitStack() as stack:
        sandbox: fleet.Sandbox | None = None
        if shared:
            env = fleet.shared_env(folder / "state")
        else:
            sandbox = stack.enter_context(fleet.standalone_sandbox(folder))
            env = fleet.url_env(sandbox.url, folder / "state")
        started = []
        for i in range(count):
            server = await stack.enter_async_context(
                fleet.stdio_server(env, folder / f"home{i}", folder / f"server{i}.log")
            )
            await fleet.call(server, "list_workspaces", {})
            started.append(server)
        if shared:  # its API, for datasets made outside the timing and the direct latency, when it can be found
            sandbox = stack.enter_context(fleet.attached_sandbox(folder / "state"))
        yield Fleet("shared" if shared else "url", started, sandbox)


async def new_dataset(group: Fleet, server: fleet.Server, name: str) -> str:
    """Through the sandbox's API when it is known, else through the tool (either shape of its fields)."""
    if group.sandbox is not None:
        return await anyio.to_thread.run_sync(group.sandbox.new_dataset, name)
    fields = DATASET_FIELDS
    listed = [{"key": k, "type": v["type"], "label": v.get("label", "")} for k, v in fields.items()]
    problems: list[str] = []
    for shape in (listed, fields):
        try:
            out = await fleet.call(server, "create_dataset", {"name": name, "fields": shape, "strict": True})
            return str(out["id"])
        except RuntimeError as exc:
            problems.append(str(exc))
    raise RuntimeError(f"could not create a dataset: {' / '.join(problems)}")


async def _upload(server: fleet.Server, dataset: str, path: Path) -> None:
    out = await fleet.call(server, "upload_file", {"dataset_id": dataset, "path": str(path), "wait_seconds": 900})
    if not out.get("finished"):
        raise RuntimeError(f"upload_file did not finish: {out.get('status')}")


async def _batch(group: Fleet, path: Path, per_server: int) -> float:
    """All uploads started together (per_server on each server); seconds to the last result."""
    work = [(s, await new_dataset(group, s, "throughput")) for s in group.servers for _ in range(per_server)]
    await anyio.to_thread.run_sync(os.sync)  # the disk has written back what came before (the last batch, 1 GiB)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for server, dataset in work:
            tg.start_soon(_upload, server, dataset, path)
    return time.perf_counter() - started


async def _many(path: Path, large: Path, samples: int, folder: Path, shared: bool, latency: bool) -> dict[str, Any]:
    """One round of the three processes: their uploads at once; then (`latency`) one's get_dataset while another
    uploads `large`."""
    async with servers(PROCESSES, folder, shared) as group:
        warm = [await new_dataset(group, server, "warm-up") for server in group.servers]
        async with anyio.create_task_group() as tg:
            for server, dataset in zip(group.servers, warm, strict=True):
                tg.start_soon(_upload, server, dataset, path)
        out: dict[str, Any] = {"seconds": await _batch(group, path, EACH)}
        if latency:
            out["latency"] = await _latency(group, large, samples)
    return out


async def _measure(path: Path, rounds: int, large: Path, samples: int, folder: Path, form: str) -> dict[str, Any]:
    """`form`: "shared", "url", or "auto" (shared, unless the first three servers cannot share: then url)."""
    shared = form != "url"
    one: list[float] = []
    many: list[float] = []
    latency: dict[str, Any] = {}
    total = PROCESSES * EACH

    async def one_process(r: int) -> None:
        async with servers(1, folder / f"one{r}", shared) as group:
            warm = await new_dataset(group, group.servers[0], "warm-up")
            await _upload(group.servers[0], warm, path)
            one.append(await _batch(group, path, total))

    for r in range(rounds):
        if r % 2:  # who goes first alternates by round: neither always follows the other's write-back
            await one_process(r)
        try:
            got = await _many(path, large, samples, folder / f"many{r}", shared, r == 0)
        except Exception as exc:  # the servers of this version cannot share a sandbox: each starts its own
            if form != "auto" or r > 0 or not shared:
                raise
            while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                exc = exc.exceptions[0]  # type: ignore[assignment]
            log(f"  shared sandbox: not supported by this server ({str(exc)[:160]}); using a standalone sandbox")
            shared = False
            got = await _many(path, large, samples, folder / f"many{r}-url", shared, r == 0)
        many.append(got["seconds"])
        latency = got.get("latency", latency)
        if not r % 2:
            await one_process(r)
        log(f"  {total} uploads: one process {one[-1]:.2f} s, {PROCESSES} processes {many[-1]:.2f} s")
    return {"one": one, "many": many, "latency": latency, "shared": shared}


async def _latency(group: Fleet, path: Path, samples: int) -> dict[str, Any]:
    uploader, reader = group.servers[:2]
    target = await new_dataset(group, reader, "read")

    async def one_read() -> float:
        began = time.perf_counter()
        await fleet.call(reader, "get_dataset", {"dataset_id": target})
        return time.perf_counter() - began

    def direct_read() -> float:
        """The same dataset straight from the sandbox's API: how much of the latency is the sandbox's."""
        assert group.sandbox is not None
        began = time.perf_counter()
        group.sandbox.api.get(f"{fleet.DATASETS}/{target}").raise_for_status()
        return time.perf_counter() - began

    direct_idle: list[float] = []
    direct_busy: list[tuple[float, float]] = []
    back_to_back: list[float] = []

    async def at_pace(count: int) -> list[float]:
        """`count` calls while idle at the pace of those during the upload (one every CADENCE s): a call that
        follows another at once finds every process it goes through still running, which none does at that pace."""
        got = []
        for _ in range(count):
            got.append(await one_read())
            if group.sandbox is not None:
                direct_idle.append(await anyio.to_thread.run_sync(direct_read))
            await anyio.sleep(CADENCE)
        return got

    await one_read()
    back_to_back += [await one_read() for _ in range(samples)]
    idle = await at_pace(samples)
    dataset = await new_dataset(group, uploader, "large")
    busy: list[tuple[float, float]] = []
    phases: list[tuple[float, str]] = []
    done = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        text = message or ""
        phase = "PUT" if text.startswith("uploading") else "import" if progress >= 50 else "pre-flight"
        if not phases or phases[-1][1] != phase:
            phases.append((time.perf_counter(), phase))

    async def upload() -> None:
        try:
            await fleet.call(
                uploader,
                "upload_file",
                {"dataset_id": dataset, "path": str(path), "wait_seconds": 900},
                progress_callback=on_progress,
            )
        finally:
            done.set()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(upload)
        while not done.is_set():
            began = time.perf_counter()
            latency = await one_read()
            busy.append((began, latency))
            if group.sandbox is not None:
                direct_busy.append((time.perf_counter(), await anyio.to_thread.run_sync(direct_read)))
            await anyio.sleep(CADENCE)
    ended = time.perf_counter()
    idle += await at_pace(samples)
    back_to_back += [await one_read() for _ in range(samples)]
    bounds = [(started, "pre-flight"), *phases, (ended, "")]
    by_phase: dict[str, list[float]] = {}
    direct_by_phase: dict[str, list[float]] = {}
    for (begin, name), (end, _) in itertools.pairwise(bounds):
        if name:
            by_phase.setdefault(name, []).extend(lat for t, lat in busy if begin <= t < end)
            direct_by_phase.setdefault(name, []).extend(lat for t, lat in direct_busy if begin <= t < end)
    return {
        "idle": idle,
        "back_to_back": back_to_back,
        "busy": [lat for _, lat in busy],
        "phases": by_phase,
        "direct_idle": direct_idle,
        "direct_busy": [lat for _, lat in direct_busy],
        "direct_phases": direct_by_phase,
    }


def run(path: Path, rounds: int, large: Path, samples: int) -> Result:
    """`BENCH_SHARING=url` or `=shared` forces a form (default: shared when the server supports it)."""
    form = os.environ.get("BENCH_SHARING", "auto")
    with fleet.temp_folder("bench-sharing-") as tmp:
        got = anyio.run(
            _measure, path, rounds, large, samples, Path(tmp), form if form in ("url", "shared") else "auto"
        )
    lat, shared = got["latency"], got["shared"]
    size = path.stat().st_size
    total = PROCESSES * EACH
    ratios = [one / many for one, many in zip(got["one"], got["many"], strict=True)]
    ratio = median(ratios)
    idle, busy = median(lat["idle"]), median(lat["busy"])
    latency_ratio = busy / idle
    worst_phase = max(
        ((name, median(v) / idle) for name, v in lat["phases"].items() if v), key=lambda x: x[1], default=("", 0.0)
    )
    met = ratio >= GOAL_THROUGHPUT and latency_ratio <= GOAL_LATENCY
    form = (
        "shared (sandbox mode, one state directory)"
        if shared
        else "url (a standalone sandbox at the default pace; every server in Prolific mode pointed at it: the "
        "server does not share its own sandbox yet)"
    )
    direct_idle = median(lat["direct_idle"]) if lat["direct_idle"] else float("nan")

    def direct(values: list[float]) -> str:
        if not values:
            return "—"
        return f"{median(values) * 1000:,.1f} ms ({median(values) / direct_idle:.2f}×)"

    back_to_back = median(lat["back_to_back"])
    phase_rows = [
        f"| during the upload's {name} | {len(v)} | {median(v) * 1000:,.1f} ms | {median(v) / idle:.2f}× | "
        f"{direct(lat['direct_phases'].get(name, []))} |"
        for name, v in lat["phases"].items()
        if v
    ]
    log(f"  {PROCESSES} processes: {ratio:.2f}x one's throughput; get_dataset {latency_ratio:.2f}x idle")
    return Result(
        9,
        f"One sandbox, {PROCESSES} server processes",
        f"{PROCESSES} processes × {EACH} uploads ≥ {GOAL_THROUGHPUT}× one process doing {total}; another's "
        f"`get_dataset` during a large upload ≤ {GOAL_LATENCY}× its idle time",
        f"throughput {ratio:.2f}×; get_dataset {latency_ratio:.2f}× idle during {large.name} "
        f"(worst phase: {worst_phase[0]}, {worst_phase[1]:.2f}×)",
        f"{ratio:.2f}× / {latency_ratio:.2f}×",
        met,
        [
            f"Sharing: {form}. Each upload is `upload_file` of {path.name} ({size / MB:,.0f} MB) to a dataset of "
            f"its own, followed to its result; all {total} started together; {rounds} round(s), the ratio is the "
            "median of each round's pair (each server warmed up by one upload first). Each batch starts once the "
            "disk has written back what came before (`os.sync`), and which of the pair goes first alternates by "
            "round. Each round, one process then three: "
            + ", ".join(f"{o:.2f} / {m:.2f} s" for o, m in zip(got["one"], got["many"], strict=True))
            + ".",
            "",
            "| Processes | Uploads | Wall time (median) | Throughput |",
            "|---|---|---|---|",
            f"| 1 | {total} | {median(got['one']):.2f} s | {total * size / median(got['one']) / MB:,.1f} MB/s |",
            f"| {PROCESSES} | {EACH} each | {median(got['many']):.2f} s | "
            f"{total * size / median(got['many']) / MB:,.1f} MB/s (**{ratio:.2f}×**) |",
            "",
            f"`get_dataset` from a second server, one call every {CADENCE * 1000:.0f} ms while the first uploads "
            f"{large.name} ({large.stat().st_size / MB:,.0f} MB) to its result, against {2 * samples} calls while "
            f"idle at the same pace (before and after). The same call made back to back, with no pause between "
            f"calls, takes {back_to_back * 1000:,.1f} ms ({busy / back_to_back:.2f}× during the upload): every "
            "process it goes through is then still running, as none is at an agent's pace, so that is not the "
            "idle time the goal compares with.",
            "",
            "| When | Calls | get_dataset (median) | vs idle | the sandbox's own API, same dataset |",
            "|---|---|---|---|---|",
            f"| idle | {len(lat['idle'])} | {idle * 1000:,.1f} ms | 1.00× | {direct(lat['direct_idle'])} |",
            f"| idle, back to back | {len(lat['back_to_back'])} | {back_to_back * 1000:,.1f} ms | "
            f"{back_to_back / idle:.2f}× | — |",
            f"| during the whole upload_file call | {len(lat['busy'])} | {busy * 1000:,.1f} ms | "
            f"**{latency_ratio:.2f}×** | {direct(lat['direct_busy'])} |",
            *phase_rows,
        ],
    )
