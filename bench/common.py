"""What the benchmarks share: the test files (generated once under bench/.data/), results, memory, the machine."""

from __future__ import annotations

import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson

ROOT: Final = Path(__file__).resolve().parents[1]
DATA: Final = ROOT / "bench" / ".data"
MB: Final = 1_000_000
GIB: Final = 1024**3

DATASET_FIELDS: Final[dict[str, dict[str, str]]] = {
    "prompt": {"type": "text", "label": "Prompt"},
    "response": {"type": "text", "label": "Response"},
    "image": {"type": "image_url"},
    "source": {"type": "metadata"},
    "group": {"type": "task_group_id"},
}
DATASET_SCHEMA: Final = {"strict": True, "fields": DATASET_FIELDS}
"""The schema of the dataset files: two texts, an image URL, metadata and a task group (strict)."""

_WORDS: Final = (
    "the a model answer question image label task group research participant response prompt rating clear short "
    "helpful accurate compare which better worse explain reason because example detail summary tone polite data "
    "record review photo describe scene object colour person animal city night day weather quick brown fox"
)


def log(message: str) -> None:
    """Progress of the suite, on stderr (stdout carries the tables)."""
    print(message, file=sys.stderr, flush=True)


def _generate(path: Path, lines: Iterator[bytes], target: int | None = None) -> Path:
    """Write lines to `path` atomically (a .tmp file renamed at the end), stopping once `target` bytes are written."""
    DATA.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    written = 0
    with open(temp, "wb") as out:
        batch: list[bytes] = []
        for line in lines:
            batch.append(line)
            written += len(line) + 1
            if len(batch) == 10_000:
                out.write(b"\n".join(batch) + b"\n")
                batch.clear()
            if target is not None and written >= target:
                break
        if batch:
            out.write(b"\n".join(batch) + b"\n")
    temp.rename(path)
    return path


def _phrases(seed: int) -> list[str]:
    rnd = random.Random(seed)
    words = _WORDS.split()
    return [" ".join(rnd.choice(words) for _ in range(rnd.randint(4, 60))) for _ in range(1009)]


def dataset_file(size: int) -> Path:
    """bench/.data/dataset-<size>.jsonl: about `size` bytes of realistic records (~800 B each), made once."""
    path = DATA / f"dataset-{size}.jsonl"
    if path.exists():
        return path
    log(f"generating {path.name} ({size / MB:,.0f} MB, once)")
    phrases = _phrases(1)

    def lines() -> Iterator[bytes]:
        i = 0
        dumps = orjson.dumps
        while True:
            yield dumps(
                {
                    "prompt": f"{i}. {phrases[i % 1009]}?",
                    "response": f"{phrases[(i * 7) % 1009]}. {phrases[(i * 13) % 1009]}.",
                    "image": f"https://cdn.example.net/images/{i % 100_000}/{i}.png",
                    "source": {"site": "web" if i % 3 else "app", "batch": i // 1000},
                    "group": f"g{i // 10}",
                }
            )
            i += 1

    return _generate(path, lines(), size)


def rejected_file(records: int, rejected: int, where: str) -> Path:
    """bench/.data/rejected-<records>-<rejected>-<where>.jsonl: small records of which `rejected` have a bad image URL,
    spread evenly through the file (`where="spread"`) or all at its end (`where="end"`)."""
    path = DATA / f"rejected-{records}-{rejected}-{where}.jsonl"
    if path.exists():
        return path
    log(f"generating {path.name} (once)")
    step = records // rejected

    def bad(i: int) -> bool:
        return i % step == step - 1 if where == "spread" else i >= records - rejected

    def lines() -> Iterator[bytes]:
        dumps = orjson.dumps
        for i in range(records):
            yield dumps(
                {
                    "prompt": f"Prompt number {i}",
                    "response": f"A short response {i * 7 % 1000}",
                    "image": f"ftp://cdn.example.net/img/{i}.png" if bad(i) else f"https://cdn.example.net/img/{i}.png",
                    "source": "web" if i % 3 else "app",
                    "group": f"g{i // 10}",
                }
            )

    return _generate(path, lines())


@dataclass
class Result:
    """One measured goal: what was measured against what, the ratio, and whether the goal is met."""

    number: int
    title: str
    goal: str
    measured: str
    ratio: str
    met: bool | None
    """None: nothing to judge (the quick size, or a figure without a goal)."""
    details: list[str] = field(default_factory=list)
    """Markdown lines: the figures behind the ratio, how it was measured, why a goal is not met."""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**not met**", None: "—"}[self.met]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ----- memory of another process (Linux /proc) -----


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[name] = int(value.split()[0]) * 1024
    return out


def rss(pid: int) -> int:
    """Resident memory of a process now, in bytes."""
    return _status(pid)["VmRSS"]


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM) since it started or since `reset_peak`, in bytes."""
    return _status(pid)["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak(pid: int) -> bool:
    """Reset the process's peak resident memory to its current one (Linux 4.0+); False where that is refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


@contextmanager
def peak_above(pid: int) -> Iterator[dict[str, int]]:
    """Measure a process's peak resident memory over a block: {'idle': RSS before, 'peak': peak during}."""
    figures = {"idle": rss(pid), "peak": 0}
    exact = reset_peak(pid)
    try:
        yield figures
    finally:
        figures["peak"] = peak_rss(pid) if exact else max(figures["idle"], rss(pid))


# ----- the machine -----


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as f:
            total = next(line for line in f if line.startswith("MemTotal"))
        memory = f"{int(total.split()[1]) / 1024**2:.1f} GiB"
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical cores",
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load": load,
    }


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return "not found"
    return out.splitlines()[0] if out else "unknown"
