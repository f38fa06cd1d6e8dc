"""Goal 10: bounded memory for any input. The server's peak resident memory above its idle memory, for a file of
one long line, many uploads at once, and a 5 GiB file (full only).

The server is the real command over stdio (bench/fleet.py), pointed at a standalone sandbox at the default pace;
each `upload_file` goes to a dataset of its own and is followed to its result (the import, and what the server
does after it: the rejected records' excerpts and file). The peak is the kernel's high-water mark (VmHWM, reset
before each case); a sampler (every 20 ms) splits it by the call's phases, from its progress notifications.
"""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

from bench import fleet
from bench.common import DATA, GIB, MB, Result, dataset_file, log, peak_rss, reset_peak, rss

BUDGET = 150 * MB
FREE_NEEDED = 15 * 10**9
"""Disk space the 5 GiB case needs: the file, and the sandbox's stored copy of it."""
UNDER_CAP = 9 * MB
"""A record just under the 10 MiB the pre-flight reads of one record: parsed, uploaded, rejected by the import."""
HUGE = 5 * GIB
"""The largest single PUT S3 (and the sandbox) accept."""


def long_line_file(size: int) -> Path:
    """bench/.data/long-line-<size>.jsonl: one record whose prompt makes it a single line of `size` bytes."""
    path = DATA / f"long-line-{size}.jsonl"
    if path.exists():
        return path
    log(f"generating {path.name} (once)")
    DATA.mkdir(parents=True, exist_ok=True)
    head = b'{"prompt": "'
    tail = orjson.dumps({"response": "r", "image": "https://cdn.example.net/i.png", "source": "web", "group": "g1"})
    tail = b'", ' + tail[1:] + b"\n"
    body = size - len(head) - len(tail)
    temp = path.with_suffix(".tmp")
    with open(temp, "wb") as out:
        out.write(head)
        chunk = b"lorem ipsum " * (MB // 12)
        left = body
        while left > 0:
            out.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
        out.write(tail)
    temp.rename(path)
    return path


def huge_file(size: int = HUGE) -> Path:
    """bench/.data/dataset-huge.jsonl: just under `size` bytes of dataset records, made by repeating one 8 MB block
    of them (cheap to write; the sandbox sees the repeats as duplicates). Deleted after use."""
    path = DATA / "dataset-huge.jsonl"
    block = dataset_file(8 * MB).read_bytes()
    with open(path, "wb") as out:
        written = 0
        while written + len(block) <= size:
            out.write(block)
            written += len(block)
    return path


async def _case(server: fleet.Server, sandbox: fleet.Sandbox, files: list[Path]) -> dict[str, Any]:
    """upload_file of every file at once (each to its own dataset), to their results: peak and phase peaks."""
    datasets = [await anyio.to_thread.run_sync(sandbox.new_dataset, "memory") for _ in files]
    marks: list[tuple[float, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        text = message or ""
        phase = "PUT" if text.startswith("uploading") else "watch and result" if progress >= 50 else "pre-flight"
        if not marks or marks[-1][1] != phase:
            marks.append((time.perf_counter(), phase))

    statuses: list[str] = []

    async def one(dataset: str, path: Path, track: bool) -> None:
        try:
            out = await fleet.call(
                server,
                "upload_file",
                {"dataset_id": dataset, "path": str(path), "wait_seconds": 900},
                progress_callback=on_progress if track else None,
            )
        except RuntimeError as exc:  # a refusal is an outcome too: its memory counts the same
            statuses.append("refused (" + str(exc).split(": ", 2)[-1][:100] + "…)")
            return
        statuses.append(str(out.get("status")))

    exact = reset_peak(server.pid)
    with fleet.Sampler(server.pid) as sampler:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i, (dataset, path) in enumerate(zip(datasets, files, strict=True)):
                tg.start_soon(one, dataset, path, i == 0 and len(files) == 1)
        ended = time.perf_counter()
    peak = peak_rss(server.pid) if exact else max(v for _, v in sampler.samples)
    phases: dict[str, int] = {}
    bounds = [(started, "pre-flight"), *marks, (ended, "")] if len(files) == 1 else []
    for (begin, name), (end, _) in itertools.pairwise(bounds):
        if name:
            phases[name] = max(phases.get(name, 0), sampler.peak_between(begin, end))
    return {"peak": peak, "phases": phases, "seconds": ended - started, "statuses": sorted(set(statuses))}


async def _measure(cases: dict[str, list[Path]], folder: Path) -> dict[str, Any]:
    """Each case on a fresh server (memory a process has once taken is seldom given back, so a case run after
    another would start from the first one's high-water mark), warmed up by one small upload first."""
    out: dict[str, Any] = {}
    with fleet.standalone_sandbox(folder) as sandbox:
        env = fleet.url_env(sandbox.url, folder / "state")
        for i, (name, files) in enumerate(cases.items()):
            async with fleet.stdio_server(env, folder / f"home{i}", folder / f"server{i}.log") as server:
                warm = await anyio.to_thread.run_sync(sandbox.new_dataset, "warm-up")
                await fleet.call(server, "upload_file", {"dataset_id": warm, "path": str(dataset_file(MB))})
                await anyio.sleep(0.5)
                idle = rss(server.pid)
                got = await _case(server, sandbox, files)
            out[name] = {**got, "idle": idle}
            log(f"  {name}: peak {(got['peak'] - idle) / MB:,.0f} MB above idle ({got['seconds']:.1f} s)")
    return out


def _free_bytes() -> int:
    return shutil.disk_usage(DATA).free


def run(line_size: int, concurrent_file: Path, concurrent: int, huge: bool) -> Result:
    line = long_line_file(line_size)
    under_cap = long_line_file(UNDER_CAP)
    cases: dict[str, list[Path]] = {
        f"one line of {line_size / MB:,.0f} MB": [line],
        f"one line of {UNDER_CAP / MB:,.0f} MB (imported, then rejected: too long a text)": [under_cap],
        f"{concurrent} uploads of {concurrent_file.stat().st_size / MB:,.0f} MB at once": [concurrent_file]
        * concurrent,
    }
    skipped = ""
    huge_path: Path | None = None
    if huge:
        DATA.mkdir(parents=True, exist_ok=True)
        free = _free_bytes()
        if free < FREE_NEEDED:
            skipped = (
                f"the 5 GiB case was skipped: {free / 1e9:,.1f} GB free under {DATA.parent}, and it needs "
                f"{FREE_NEEDED / 1e9:,.0f} GB (the file and the sandbox's copy)"
            )
            log(f"  {skipped}")
        else:
            huge_path = huge_file()
            cases[f"a file of {huge_path.stat().st_size / GIB:,.2f} GiB"] = [huge_path]
    try:
        with fleet.temp_folder("bench-memory-") as tmp:
            got = anyio.run(_measure, cases, Path(tmp))
    finally:
        if huge_path is not None:
            huge_path.unlink(missing_ok=True)
        for made in (line, under_cap):  # the rejected-records files the server wrote beside them
            for rejected in DATA.glob(f"{made.stem}.rejected*{made.suffix}"):
                rejected.unlink(missing_ok=True)
    rows = []
    worst = 0
    for name in cases:
        fig = got[name]
        idle = fig["idle"]
        above = fig["peak"] - idle
        worst = max(worst, above)
        phases = ", ".join(f"{p} {(v - idle) / MB:+,.0f} MB" for p, v in fig["phases"].items() if v)
        rows.append(
            f"| {name} | {fig['seconds']:.1f} s | {', '.join(fig['statuses'])} | {idle / MB:,.0f} MB | "
            f"**{above / MB:,.0f} MB** | {phases or '—'} |"
        )
    met = None if skipped else worst <= BUDGET
    return Result(
        10,
        "Bounded memory for any input",
        "server peak RSS ≤ 150 MB above idle: one long line, 20 uploads at once, a 5 GiB file",
        f"worst {worst / MB:,.0f} MB above idle" + (" (5 GiB case skipped)" if skipped else ""),
        f"{worst / MB:,.0f} MB",
        met,
        [
            "Each case on a fresh server; idle: its resident memory after a warm-up upload. Each case: "
            "`upload_file` to its result; the peak is VmHWM, reset first. By phase: the sampled peak in each of the "
            "call's phases (one call only), above idle.",
            "",
            "| Case | Call(s) | Outcome | Idle | Peak above idle | By phase |",
            "|---|---|---|---|---|---|",
            *rows,
            *(["", f"Note: {skipped}."] if skipped else []),
        ],
    )
