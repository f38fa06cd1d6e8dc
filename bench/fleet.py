"""What goals 8-10 share: standalone sandboxes, MCP servers over stdio pointed at them (the way clients run the
server), the sandbox's own API for the floor client, and a sampler of a server's memory.

The server is the real command (`prolific-datasets-mcp`, or `python -m prolific_mcp` where it is not installed),
spawned over stdio by the SDK's `Client`. It reaches a sandbox in one of two ways:

- **url**: a standalone sandbox (`prolific-datasets-mcp sandbox --port 0 --state-dir D`, or bench/slow_sandbox.py
  for a capped processing rate), and each server in Prolific mode with `PROLIFIC_URL` set to its loopback URL and
  a dummy token (the sandbox accepts any token). This works whatever the server's own sandbox handling is.
- **shared**: each server in sandbox mode on one state directory, so they share the sandbox the first one starts.
  Used by goal 9 when the server supports it (when its first three servers all answer); otherwise goal 9 falls back
  to **url** and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
import httpx2
from mcp import Client, StdioServerParameters

from bench.common import DATA, DATASET_SCHEMA, ROOT, log, rss

DATASETS = "/api/v1/data-collection/datasets"
TERMINAL = frozenset({"complete", "partial", "failed", "pending_schema"})
READY = re.compile(r"ready at (?P<url>http://\S+) \(fake S3 at (?P<s3>http://[^,\s)]+)")
"""The sandbox's one stdout line (docs/sandbox.md, Running it)."""


BASELINE_COMMAND: Final = [sys.executable, "-m", "bench.baseline"]
"""The server with the earlier polling schedule and inline scan hash (bench/baseline.py)."""


def server_command() -> list[str]:
    """The server's command: the installed `prolific-datasets-mcp` script when there is one."""
    script = Path(sys.executable).parent / "prolific-datasets-mcp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "prolific_mcp"]


@dataclass
class Sandbox:
    """A standalone sandbox process and a client of its API (the floor client uses it directly)."""

    process: subprocess.Popen[bytes] | None
    """None for a sandbox another process started (the servers' shared one)."""
    url: str
    state_dir: Path
    api: httpx2.Client
    admin_token: str | None = None
    workspace: str = ""

    def new_dataset(self, name: str, schema: dict[str, Any] | None = None) -> str:
        """A V4 dataset with the bench's schema (the tools' field shapes may change; the API's do not)."""
        if not self.workspace:
            self.workspace = self.api.get("/api/v1/workspaces/").json()["results"][0]["id"]
        body = {"name": name, "workspace_id": self.workspace, "schema": schema or DATASET_SCHEMA}
        response = self.api.post(DATASETS, json=body)
        if response.is_error:
            raise RuntimeError(f"the sandbox refused to create a dataset: {response.status_code} {response.text[:500]}")
        return str(response.json()["id"])

    def get_import(self, dataset_id: str, import_id: str) -> dict[str, Any]:
        response = self.api.get(f"{DATASETS}/{dataset_id}/imports/{import_id}")
        response.raise_for_status()
        return dict(response.json())

    def status_requests(self, import_id: str) -> int:
        """How many status requests the sandbox answered for one import (its admin request log)."""
        if not self.admin_token:
            return -1
        got = self.api.get("/_sandbox/requests", headers={"Authorization": f"Bearer {self.admin_token}"})
        got.raise_for_status()
        body = got.json()
        rows = body.get("requests", body) if isinstance(body, dict) else body
        return sum(
            1 for r in rows if r.get("method") == "GET" and str(r.get("path", "")).endswith(f"/imports/{import_id}")
        )


@contextlib.contextmanager
def standalone_sandbox(folder: Path, *, records_per_second: float | None = None) -> Iterator[Sandbox]:
    """A sandbox in its own process at the default pace: the real `sandbox` command, or (with a processing rate cap,
    which the command has no flag for) bench/slow_sandbox.py, which also keeps the request log readable."""
    state = folder / "sandbox"
    state.mkdir(parents=True, exist_ok=True)
    if records_per_second is None:
        cmd = [*server_command(), "sandbox", "--port", "0", "--state-dir", str(state)]
    else:
        cmd = [sys.executable, "-m", "bench.slow_sandbox", "--state-dir", str(state)]
        cmd += ["--records-per-second", str(records_per_second)]
    log_file = open(folder / "sandbox.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, cwd=ROOT, env=_env({})
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        found = READY.search(line)
        if found is None:
            process.kill()
            raise RuntimeError(f"the sandbox did not start: {line!r} {(folder / 'sandbox.log').read_text()[-2000:]}")
        admin = re.search(r"admin token (\S+?)\)", line)
        with httpx2.Client(base_url=found["url"], headers={"Authorization": "Token bench"}, timeout=120) as api:
            yield Sandbox(process, found["url"], state, api, admin[1] if admin and "…" not in admin[1] else None)
    except Exception:
        log(f"the sandbox's log ends with:\n{(folder / 'sandbox.log').read_text(errors='replace')[-3000:]}")
        raise
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()


@contextlib.contextmanager
def attached_sandbox(state_dir: Path) -> Iterator[Sandbox | None]:
    """The sandbox the servers on `state_dir` share, through the address file it writes there (its URL and tokens),
    or None when there is none to be found."""
    found = sorted(state_dir.rglob("address.json"))
    try:
        address = json.loads(found[0].read_text()) if found else None
    except (OSError, ValueError):
        address = None
    if not isinstance(address, dict) or "url" not in address:
        yield None
        return
    headers = {"Authorization": f"Token {address.get('token') or 'bench'}"}
    with httpx2.Client(base_url=address["url"], headers=headers, timeout=120) as api:
        yield Sandbox(None, address["url"], found[0].parent, api, address.get("admin_token"))


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **extra}


def url_env(sandbox_url: str, state_dir: Path) -> dict[str, str]:
    """A server pointed at a running sandbox: Prolific mode, its loopback URL, a dummy token."""
    return {
        "PROLIFIC_MODE": "prolific",
        "PROLIFIC_URL": sandbox_url,
        "PROLIFIC_TOKEN": "bench-token",
        "PROLIFIC_MCP_STATE_DIR": str(state_dir),
    }


def shared_env(state_dir: Path) -> dict[str, str]:
    """A server in sandbox mode on a state directory other servers share (they share its sandbox)."""
    return {"PROLIFIC_MODE": "sandbox", "PROLIFIC_MCP_STATE_DIR": str(state_dir)}


def _children() -> set[int]:
    me = str(os.getpid())
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                out.add(int(entry))
    return out


@dataclass
class Server:
    client: Client
    pid: int


@contextlib.asynccontextmanager
async def stdio_server(
    env: dict[str, str], home: Path, log_path: Path, command: list[str] | None = None
) -> AsyncIterator[Server]:
    """The server over stdio, as a client spawns it; its stderr goes to `log_path`, and its pid is found in /proc
    (the SDK does not expose it) so its memory can be read. `command`: another command than the server's own
    (bench/baseline.py: the earlier code)."""
    await anyio.Path(home).mkdir(parents=True, exist_ok=True)
    full = _env({"HOME": str(home), "PROLIFIC_MCP_ALLOWED_DIRS": str(DATA), "BENCH_LOG": str(log_path), **env})
    cmd = command or server_command()
    params = StdioServerParameters(
        command="/bin/sh", args=["-c", 'exec "$0" "$@" 2>>"$BENCH_LOG"', *cmd], env=full, cwd=str(home)
    )
    before = _children()
    async with Client(params, read_timeout_seconds=1800) as client:
        new = _children() - before
        if len(new) != 1:
            raise RuntimeError(f"could not tell the server's process among {sorted(new)}")
        yield Server(client, new.pop())


async def call(server: Server, tool: str, arguments: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A tool call's structured content; a tool error raises with its text."""
    result = await server.client.call_tool(tool, arguments, **kwargs)
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise RuntimeError(f"{tool} failed: {text[:600]}")
    return dict(result.structured_content or {})


# ----- the floor client -----


def floor_upload(sandbox: Sandbox, dataset_id: str, path: Path, poll: float = 0.05) -> dict[str, float]:
    """The same work as upload_file with nothing in between: the upload URL, `curl -T`, then the import polled every
    `poll` s until terminal. Times (perf_counter) of each step's end."""
    started = time.perf_counter()
    target = sandbox.api.get(f"{DATASETS}/{dataset_id}/upload-url/{path.name}").json()
    got_url = time.perf_counter()
    subprocess.run(
        [
            *("curl", "-sS", "-f", "-T", str(path), "-o", "/dev/null"),
            *("-H", f"Content-Type: {target['content_type']}", "-H", "Expect:", target["upload_url"]),
        ],
        check=True,
    )
    put_done = time.perf_counter()
    while True:
        job = sandbox.get_import(dataset_id, target["import_id"])
        if job["status"] in TERMINAL:
            break
        time.sleep(poll)
    seen = time.perf_counter()
    return {"started": started, "url": got_url, "put": put_done, "seen": seen, "status": job["status"]}


# ----- memory, sampled -----


@dataclass
class Sampler:
    """Samples a process's resident memory every `every` s in a thread: the peak between two marks."""

    pid: int
    every: float = 0.02
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        def run() -> None:
            while not self._stop.is_set():
                with contextlib.suppress(OSError, KeyError):
                    self.samples.append((time.perf_counter(), rss(self.pid)))
                self._stop.wait(self.every)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def peak_between(self, start: float, end: float) -> int:
        values = [v for t, v in self.samples if start <= t <= end]
        return max(values) if values else 0


def temp_folder(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=prefix)
