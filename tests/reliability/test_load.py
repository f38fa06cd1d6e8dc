"""A bounded load test (issue item 3): many MCP clients at once over streamable HTTP, against a sandbox that
injects 429s (with Retry-After), 503s and dropped connections.

Each client runs create_dataset → set_schema → upload_file → the summary (get_import_status), following the
advice of any error it gets. Afterwards the sandbox's own database must hold exactly one dataset and one import
per client (nothing lost, nothing duplicated), and the server's memory must not grow from one wave of clients to
the next. CI runs 20 clients in two waves with small files; for a longer local run:

    PROLIFIC_MCP_LOAD_CLIENTS=100 PROLIFIC_MCP_LOAD_WAVES=5 PROLIFIC_MCP_LOAD_RECORDS=5000 \\
        PROLIFIC_MCP_LOAD_SECONDS=900 pytest -m load -s
"""

from __future__ import annotations

import os
import re
import resource
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from prolific_mcp.sandbox import Sandbox
from prolific_mcp.server.app import build_server
from prolific_mcp.server.http import HttpOptions
from tests.server.conftest import SCHEMA_FIELDS, make_settings, records, text_of, write_jsonl
from tests.server.test_transports import _serve

pytestmark = [pytest.mark.anyio, pytest.mark.load]

CLIENTS = int(os.environ.get("PROLIFIC_MCP_LOAD_CLIENTS", "20"))
WAVES = int(os.environ.get("PROLIFIC_MCP_LOAD_WAVES", "2"))
RECORDS = int(os.environ.get("PROLIFIC_MCP_LOAD_RECORDS", "40"))
DEADLINE = float(os.environ.get("PROLIFIC_MCP_LOAD_SECONDS", "80"))
MEMORY_GROWTH_LIMIT = 48 * 1024 * 1024
"""Bytes the resident set may grow between the end of the first wave and the end of the last."""
TOKEN = "load-test-bearer-token-0123456789"
ACTIONABLE = re.compile(r"retry after (\d+) s|try again|again in a minute|upload_file again", re.IGNORECASE)


def faults(sbx: Sandbox) -> None:
    """One wave's faults: each kind hits a few requests, spread over the clients."""
    imports = "/api/v1/data-collection/datasets/*/imports/*"
    sbx.faults.add(f"GET {imports}", status=429, retry_after=1, times=5)
    sbx.faults.add(f"GET {imports}", status=503, times=5)
    sbx.faults.add(f"GET {imports}", action="drop", times=3)
    sbx.faults.add("GET /api/v1/data-collection/datasets/*/upload-url/*", status=429, retry_after=1, times=2)
    sbx.faults.add("POST /api/v1/data-collection/datasets", status=429, retry_after=1, times=2)
    sbx.faults.add("PATCH /api/v1/data-collection/datasets/*", status=429, retry_after="0", times=2)
    sbx.faults.add("PUT *", status=503, xml_code="SlowDown", times=5)
    sbx.faults.add("PUT *", action="drop", after_bytes=100, times=3)


def vm(field_name: str) -> int:
    """A /proc/self/status memory figure in bytes (VmRSS now, VmHWM the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Outcome:
    """What one client saw."""

    dataset_id: str | None = None
    import_id: str | None = None
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    """Every error text it got (each must have been actionable)."""
    failure: str | None = None


async def with_retries(client: Client, outcome: Outcome, tool: str, args: dict[str, Any]) -> CallToolResult:
    """Call a tool; on an actionable error, do what it says (wait if told how long) and call again."""
    for _ in range(6):
        outcome.calls += 1
        result = await client.call_tool(tool, args)
        if not result.is_error:
            return result
        text = text_of(result)
        outcome.errors.append(text)
        advice = ACTIONABLE.search(text)
        if advice is None:
            raise AssertionError(f"{tool}: an error that says nothing to do: {text}")
        await anyio.sleep(min(float(advice.group(1) or 0.2), 2.0))
    raise AssertionError(f"{tool}: still failing after following the advice six times: {outcome.errors[-1]}")


async def one_client(url: str, data_dir: Path, name: str, mode: str, outcome: Outcome) -> None:
    path = write_jsonl(data_dir / f"{name}.jsonl", records(RECORDS, bad={RECORDS // 2: {"photo": "not a link"}}))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=120) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode) as client,
        ):
            created = await with_retries(client, outcome, "create_dataset", {"name": name})
            outcome.dataset_id = (created.structured_content or {})["id"]
            await with_retries(
                client,
                outcome,
                "set_schema",
                {"dataset_id": outcome.dataset_id, "fields": SCHEMA_FIELDS, "strict": False},
            )
            uploaded = await with_retries(
                client,
                outcome,
                "upload_file",
                {"dataset_id": outcome.dataset_id, "path": path.name, "wait_seconds": 60},
            )
            data = uploaded.structured_content or {}
            outcome.import_id = data["import_id"]
            assert (data["status"], data["accepted_count"], data["rejected_count"]) == ("partial", RECORDS - 1, 1)
            summary = await with_retries(
                client,
                outcome,
                "get_import_status",
                {"dataset_id": outcome.dataset_id, "import_id": outcome.import_id, "wait_seconds": 30},
            )
            text = text_of(summary)
            assert f"record {RECORDS // 2 + 1}" in text and len(text) <= 2100, text
    except Exception as exc:  # recorded, then asserted on: one client's failure must not hide the others'
        outcome.failure = f"{type(exc).__name__}: {exc}"


async def test_many_clients_over_http_with_faults(tmp_path: Path, data_dir: Path) -> None:
    settings = make_settings(tmp_path, data_dir, PROLIFIC_MCP_WAIT_SECONDS="60")
    outcomes: list[Outcome] = []
    memory: list[int] = []
    with Sandbox.start(state_dir=tmp_path / "sbx", pace="fast") as sbx:
        server = build_server(settings, sandbox_url=sbx.url)
        with anyio.fail_after(DEADLINE):
            async with _serve(server, HttpOptions(token=TOKEN)) as url:
                for wave in range(WAVES):
                    faults(sbx)
                    wave_outcomes = [Outcome() for _ in range(CLIENTS)]
                    async with anyio.create_task_group() as tg:
                        for i, outcome in enumerate(wave_outcomes):
                            mode = "auto" if i % 2 else "legacy"
                            tg.start_soon(one_client, url, data_dir, f"load-{wave}-{i}", mode, outcome)
                    outcomes += wave_outcomes
                    assert not sbx.faults.unused(), [r.to_dict() for r in sbx.faults.unused()]
                    memory.append(vm("VmRSS"))
        db = sqlite3.connect(sbx.state_dir / "sandbox.sqlite3")
        datasets = db.execute("SELECT id, name, total FROM datasets WHERE name LIKE 'load-%'").fetchall()
        uploads = db.execute(
            "SELECT d.name, u.id, u.status FROM uploads u JOIN datasets d ON d.pk = u.dataset_pk "
            "WHERE d.name LIKE 'load-%'"
        ).fetchall()
        db.close()
    failures = [o.failure for o in outcomes if o.failure]
    assert not failures, failures
    expected = {f"load-{w}-{i}" for w in range(WAVES) for i in range(CLIENTS)}
    assert sorted(name for _, name, _ in datasets) == sorted(expected), "one dataset per client: none lost or doubled"
    assert all(total == RECORDS - 1 for _, _, total in datasets), "every accepted record counted once"
    assert sorted(name for name, _, _ in uploads) == sorted(expected), "one import per client"
    assert {status for _, _, status in uploads} == {"partial"}
    assert {u_id for _, u_id, _ in uploads} == {o.import_id for o in outcomes}
    errors = [e for o in outcomes for e in o.errors]
    assert errors, "the injected faults must have reached some clients as actionable errors"
    growth = memory[-1] - memory[0]
    peak = vm("VmHWM")
    print(
        f"\nload: {CLIENTS} clients x {WAVES} waves, {sum(o.calls for o in outcomes)} tool calls, "
        f"{len(errors)} actionable errors followed; RSS after each wave (MiB): "
        f"{[round(m / 2**20, 1) for m in memory]}; peak RSS {peak / 2**20:.1f} MiB"
    )
    if WAVES > 1:
        assert growth < MEMORY_GROWTH_LIMIT, f"memory grew by {growth / 2**20:.1f} MiB from the first wave to the last"
