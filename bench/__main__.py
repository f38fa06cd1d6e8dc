"""The benchmark suite: `python -m bench quick|full [--only 1,2,...] [--output FILE]` (see docs/performance.md).

quick: small files, a couple of minutes on 2 cores; CI runs it as a smoke test and asserts no goal.
full: the figures of docs/performance.md (a 1 GiB upload among them, and a 5 GiB one when the disk has room).

Goals 1-7 are the floor kept from the first round; 8-10 are what a user waits for (time to outcome at the
sandbox's default pace), one sandbox shared by several server processes, and memory bounded for any input.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import memory, outcome, polling, report, scan, sharing, startup, summaries, uploads
from bench.common import DATA, GIB, MB, ROOT, Result, dataset_file, log, machine, rejected_file, tool_version


@dataclass(frozen=True)
class Size:
    upload_files: tuple[int, ...]
    """Sizes of the JSONL files uploaded for goal 1 (the last one decides the ratio)."""
    upload_rounds: int
    scan_file: int
    small_records: int
    """Records of the small-record file: goal 2's second file and goal 7's import."""
    scan_rounds: int
    summary_rounds: int
    startup_rounds: int
    polling_seeds: int
    concurrent_file: int
    concurrent_singles: int
    outcome_files: tuple[int, int]
    """Goal 8: the small file (1 MB) and the large one, each timed against the floor client."""
    outcome_rounds: int
    lag_lengths: tuple[float, ...]
    """Goal 8: seconds of the imports whose terminal-status-to-result lag is measured."""
    sharing_file: int
    sharing_rounds: int
    sharing_large: int
    """Goal 9: the file one process uploads while another's get_dataset is timed."""
    latency_samples: int
    long_line: int
    """Goal 10: the size of the file of one line."""
    memory_file: int
    """Goal 10: the file uploaded 20 times at once."""
    huge: bool
    """Goal 10: the 5 GiB case (when the disk has room)."""
    output: Path


SIZES = {
    "quick": Size(
        upload_files=(10 * MB, 100 * MB),
        upload_rounds=2,
        scan_file=100 * MB,
        small_records=200_000,
        scan_rounds=5,
        summary_rounds=3,
        startup_rounds=5,
        polling_seeds=50,
        concurrent_file=10 * MB,
        concurrent_singles=3,
        outcome_files=(MB, 10 * MB),
        outcome_rounds=1,
        lag_lengths=(),
        sharing_file=MB,
        sharing_rounds=1,
        sharing_large=10 * MB,
        latency_samples=10,
        long_line=20 * MB,
        memory_file=MB,
        huge=False,
        output=DATA / "performance-quick.md",
    ),
    "full": Size(
        upload_files=(100 * MB, GIB),
        upload_rounds=5,
        scan_file=GIB,
        small_records=1_000_000,
        scan_rounds=3,
        summary_rounds=5,
        startup_rounds=21,
        polling_seeds=200,
        concurrent_file=50 * MB,
        concurrent_singles=5,
        outcome_files=(MB, 300 * MB),
        outcome_rounds=5,
        lag_lengths=(2.0, 8.0, 20.0, 60.0),
        sharing_file=10 * MB,
        sharing_rounds=3,
        sharing_large=GIB,
        latency_samples=20,
        long_line=200 * MB,
        memory_file=50 * MB,
        huge=True,
        output=ROOT / "docs" / "performance.md",
    ),
}
QUICK_NOTE = (
    "`quick` uses small files and few runs: a smoke test whose verdicts are indicative only (short transfers are "
    "the noisiest). The goals are judged by `full`, in docs/performance.md."
)
CONCURRENT = 20
WARM_UP_FILE = MB


def sandbox_import(records: int) -> Result:
    """Goal 7, by bench/sandbox_import.py."""
    from bench import sandbox_import as imports

    got = imports.measure(records)
    ratio = got.rate / imports.GOAL
    log(f"  sandbox import: {got.rate:,.0f} records/s")
    return Result(
        7,
        "Sandbox import throughput",
        "≥ 100,000 small records/s per core",
        f"{got.rate:,.0f} records/s",
        f"{ratio:.2f}×",
        ratio >= 1.0,
        [
            f"`bench/sandbox_import.py`: {records:,} records of 5 short fields (strict schema), PUT to the sandbox "
            "child (`--pace fast`) and imported: schema-validated, deduplicated and stored in SQLite, on one core "
            "(the import runs in one worker thread). Processing time from the sandbox's own timestamps.",
            "",
            "| Records | File | Processing | Records/s | End to end (PUT + import) |",
            "|---|---|---|---|---|",
            f"| {records:,} | {got.size / MB:,.0f} MB | {got.processing_seconds:.2f} s | **{got.rate:,.0f}** "
            f"({ratio:.2f}× the goal) | {got.overall:,.0f} records/s |",
        ],
    )


def prepare(size: Size) -> None:
    """Generate every test file first (once: they are kept under bench/.data/)."""
    from bench import sandbox_import as imports

    files = {*size.upload_files, size.scan_file, size.concurrent_file, WARM_UP_FILE, *size.outcome_files}
    for n in {*files, size.sharing_file, size.sharing_large, size.memory_file}:
        dataset_file(n)
    imports.data_file(size.small_records)
    for seconds in size.lag_lengths:
        imports.data_file(int(seconds * outcome.RATE))
    memory.long_line_file(size.long_line)
    memory.long_line_file(memory.UNDER_CAP)
    for where in ("spread", "end"):
        rejected_file(summaries.RECORDS, summaries.REJECTED, where)


def run(size: Size, only: set[int]) -> list[Result]:
    from bench import sandbox_import as imports

    warm = dataset_file(WARM_UP_FILE)
    steps: dict[int, Callable[[], Result]] = {
        1: lambda: uploads.run_throughput([dataset_file(n) for n in size.upload_files], warm, size.upload_rounds),
        2: lambda: scan.run(dataset_file(size.scan_file), imports.data_file(size.small_records), size.scan_rounds),
        3: lambda: summaries.run(size.summary_rounds),
        4: lambda: startup.run(size.startup_rounds),
        5: lambda: polling.run(size.polling_seeds),
        6: lambda: uploads.run_concurrency(
            dataset_file(size.concurrent_file), warm, CONCURRENT, size.concurrent_singles
        ),
        7: lambda: sandbox_import(size.small_records),
        8: lambda: outcome.run(
            dataset_file(size.outcome_files[0]),
            dataset_file(size.outcome_files[1]),
            size.outcome_rounds,
            size.lag_lengths,
            size.polling_seeds,
        ),
        9: lambda: sharing.run(
            dataset_file(size.sharing_file), size.sharing_rounds, dataset_file(size.sharing_large), size.latency_samples
        ),
        10: lambda: memory.run(size.long_line, dataset_file(size.memory_file), CONCURRENT, size.huge),
    }
    results = []
    for number, step in steps.items():
        if only and number not in only:
            continue
        log(f"goal {number}")
        began = time.monotonic()
        results.append(step())
        log(f"  goal {number} took {time.monotonic() - began:.0f} s")
    return results


def _commit() -> str:
    """The checked-out commit (read only), and whether the working tree differs from it."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    commit = head.stdout.strip() or "unknown"
    return f"{commit} with uncommitted changes" if dirty.stdout.strip() else commit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("size", choices=sorted(SIZES), help="quick (CI smoke test) or full (docs/performance.md)")
    parser.add_argument("--only", default="", help="comma-separated goal numbers (1-10) to run; default: all")
    parser.add_argument("--output", type=Path, help="where to write the report (default depends on the size)")
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("python -m bench: the suite reads memory figures from /proc, so it runs on Linux only", file=sys.stderr)
        return 2
    size = SIZES[args.size]
    only = {int(x) for x in args.only.split(",") if x.strip()}
    started = time.monotonic()
    before = machine()
    log(f"bench {args.size}: preparing the test files under {DATA}")
    prepare(size)
    results = run(size, only)
    after = machine()
    duration = time.monotonic() - started
    extra = {
        "load average (1, 5, 15 min) at the start and the end": f"{before['load']} → {after['load']}",
        "curl": tool_version(["curl", "--version"]),
        "commit": _commit(),
    }
    info = {k: v for k, v in before.items() if k != "load"}
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = report.render(results, size=args.size, when=when, duration=duration, machine=info, extra=extra)
    if args.size == "quick":
        text = text.replace("## Goals\n", f"## Goals\n\n{QUICK_NOTE}\n", 1)
    output = args.output or size.output
    report.write(output, text)
    print(f"{'#':>2}  {'verdict':<12} {'ratio':<18} what")
    for r in results:
        print(f"{r.number:>2}  {r.verdict.strip('*'):<12} {r.ratio:<18} {r.title}")
    print(f"\n{args.size}: {duration:.0f} s; report written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
