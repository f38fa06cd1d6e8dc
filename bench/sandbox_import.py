"""Import throughput of the sandbox: one JSONL file of small records through the real HTTP flow, pace fast.

    python bench/sandbox_import.py [--records N | --quick]

Generates the file once under bench/.data/ (gitignored), starts the sandbox as a child process (its own core),
creates a V4 dataset with a 5-field schema, PUTs the file to the fake S3 and polls the import to its end.
Prints records/s of the import's processing (the sandbox's own timestamps: processing started → terminal) and
end to end (PUT start → terminal seen), and the ratio to the goal of 100,000 records/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx2
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prolific_mcp.sandbox import SandboxProcess

GOAL = 100_000
DATA = Path(__file__).resolve().parent / ".data"
SCHEMA = {
    "strict": True,
    "fields": {
        "prompt": {"type": "text", "label": "Prompt"},
        "response": {"type": "text"},
        "image": {"type": "image_url"},
        "source": {"type": "metadata"},
        "group": {"type": "task_group_id"},
    },
}


def data_file(records: int) -> Path:
    """bench/.data/records-N.jsonl, generated on first use."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"records-{records}.jsonl"
    if path.exists():
        return path
    temp = path.with_suffix(".tmp")
    with open(temp, "wb") as out:
        batch: list[bytes] = []
        for i in range(records):
            batch.append(
                orjson.dumps(
                    {
                        "prompt": f"Prompt number {i}",
                        "response": f"A short response {i * 7 % 1000}",
                        "image": f"https://cdn.example.net/img/{i}.png",
                        "source": "web" if i % 3 else "app",
                        "group": f"g{i // 10}",
                    }
                )
            )
            if len(batch) == 10_000:
                out.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            out.write(b"\n".join(batch) + b"\n")
    temp.rename(path)
    return path


def file_chunks(path: Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def seconds_between(start: str, end: str) -> float:
    def parse(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    return parse(end) - parse(start)


@dataclass(frozen=True)
class ImportRun:
    records: int
    size: int
    put_seconds: float
    processing_seconds: float
    total_seconds: float

    @property
    def rate(self) -> float:
        """Records per second of the import's processing (the sandbox's own timestamps)."""
        return self.records / self.processing_seconds

    @property
    def overall(self) -> float:
        """Records per second from the start of the PUT to the terminal status seen."""
        return self.records / self.total_seconds


def measure(records: int) -> ImportRun:
    """One import of `records` small records through the sandbox child (pace fast)."""
    path = data_file(records)
    size = path.stat().st_size
    with (
        tempfile.TemporaryDirectory(prefix="sandbox-bench-") as state,
        SandboxProcess.start(Path(state), pace="fast") as sbx,
        httpx2.Client(base_url=sbx.url, headers={"Authorization": "Token bench"}, timeout=600) as api,
    ):
        ws = api.get("/api/v1/workspaces/").json()["results"][0]["id"]
        ds = api.post(
            "/api/v1/data-collection/datasets", json={"name": "bench", "workspace_id": ws, "schema": SCHEMA}
        ).json()
        up = api.get(f"/api/v1/data-collection/datasets/{ds['id']}/upload-url/bench.jsonl").json()
        t0 = time.perf_counter()
        with httpx2.Client(timeout=600) as s3:
            put = s3.put(
                up["upload_url"],
                content=file_chunks(path),
                headers={"Content-Type": up["content_type"], "Content-Length": str(size)},
            )
        put.raise_for_status()
        t_put = time.perf_counter() - t0
        status_url = f"/api/v1/data-collection/datasets/{ds['id']}/imports/{up['import_id']}"
        while True:
            job = api.get(status_url).json()
            if job["status"] not in ("uninitialised", "queued", "processing"):
                break
            time.sleep(0.2)
        t_total = time.perf_counter() - t0
    if job["status"] != "complete" or job["accepted_count"] != records:
        raise RuntimeError(
            f"unexpected outcome: {job['status']}, accepted {job.get('accepted_count')}, {job.get('reason')}"
        )
    processing = seconds_between(job["processing_started_at"], job["updated_at"])
    return ImportRun(records, size, t_put, processing, t_total)


def run(records: int) -> float:
    """Measure and print; returns the processing rate (records/s)."""
    got = measure(records)
    print(f"file: records-{records}.jsonl, {records:,} records, {got.size / 1e6:.1f} MB")
    print(f"PUT: {got.put_seconds:.2f} s ({got.size / got.put_seconds / 1e6:.0f} MB/s)")
    print(
        f"import processing: {got.processing_seconds:.2f} s = {got.rate:,.0f} records/s "
        f"({got.rate / GOAL:.2f}x the 100k goal)"
    )
    overall = got.overall
    print(f"end to end (PUT + import): {got.total_seconds:.2f} s = {overall:,.0f} records/s ({overall / GOAL:.2f}x)")
    return got.rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the file (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="200,000 records")
    args = parser.parse_args()
    records = 200_000 if args.quick else args.records
    print(f"cpu: {os.cpu_count()} logical cores; the sandbox processes an import on one")
    rate = run(records)
    return 0 if rate >= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
