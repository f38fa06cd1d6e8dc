"""Less common paths: V3 datasets, appends that wait for an import, resume rules, resource-updated events."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from prolific_mcp.sandbox import Sandbox
from tests.server.conftest import SCHEMA_FIELDS, call, ok, records, text_of, write_jsonl

pytestmark = pytest.mark.anyio


async def test_v3_dataset_takes_csv_and_waits_for_ready(server: MCPServer, sandbox: Sandbox, data_dir: Path) -> None:
    """A V3 dataset comes from a workspace without typed datasets (the sandbox's second one): asked for, never
    chosen by an argument."""
    (data_dir / "v3.csv").write_text("id,text,META_source,META_TASK_GROUP_ID\n1,hello,web,g1\n2,world,app,g1\n")
    write_jsonl(data_dir / "v3.jsonl", records(1))
    async with Client(server) as client:
        created = await ok(client, "create_dataset", {"name": "Legacy", "workspace_id": sandbox.legacy_workspace_id})
        dataset_id = (created.structured_content or {})["id"]
        assert (created.structured_content or {})["version"] == 3
        refused = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "v3.jsonl"})
        assert refused.is_error
        assert "CSV files only" in text_of(refused)
        uploaded = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "v3.csv"})
        assert (uploaded.structured_content or {})["status"] == "complete"
        assert "READY" in text_of(uploaded)
        gone = await call(client, "create_dataset", {"name": "x", "legacy_v3": True})
        assert gone.is_error and "legacy_v3" in text_of(gone)  # no such argument: the workspace decides


async def test_append_waits_while_an_import_holds_the_dataset(server: MCPServer, sandbox: Sandbox) -> None:
    async with Client(server) as client:
        created = await ok(client, "create_dataset", {"name": "A", "fields": SCHEMA_FIELDS, "strict": True})
        dataset_id = (created.structured_content or {})["id"]
        sandbox.faults.add("POST */datapoints", status=409, times=1)
        appended = await ok(
            client,
            "append_records",
            {"dataset_id": dataset_id, "records": records(3, bad={1: {"photo": "nope"}}), "wait_seconds": 20},
        )
        data = appended.structured_content or {}
        assert (data["accepted_count"], data["rejected_count"]) == (2, 1)
        assert data["groups"][0]["records"] == [2]
        assert sandbox.faults.unused() == []
        too_many = await call(client, "append_records", {"dataset_id": dataset_id, "records": records(1001)})
        assert too_many.is_error
        assert "upload_file" in text_of(too_many)


async def test_a_failed_upload_is_uploaded_again(server: MCPServer, data_dir: Path) -> None:
    write_jsonl(data_dir / "bad.jsonl", records(2, bad={0: {"photo": "x"}, 1: {"photo": "y"}}))
    async with Client(server) as client:
        created = await ok(client, "create_dataset", {"name": "F", "fields": SCHEMA_FIELDS, "strict": True})
        dataset_id = (created.structured_content or {})["id"]
        first = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "bad.jsonl"})
        second = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "bad.jsonl"})
    assert (first.structured_content or {})["status"] == "failed"
    assert (second.structured_content or {})["status"] == "failed"
    assert (second.structured_content or {})["import_id"] != (first.structured_content or {})["import_id"]


async def test_the_same_file_after_set_schema_follows_the_released_import(server: MCPServer, data_dir: Path) -> None:
    write_jsonl(data_dir / "early.jsonl", records(3))
    async with Client(server) as client:
        created = await ok(client, "create_dataset", {"name": "P"})
        dataset_id = (created.structured_content or {})["id"]
        parked = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "early.jsonl"})
        await ok(client, "set_schema", {"dataset_id": dataset_id, "fields": SCHEMA_FIELDS, "strict": False})
        again = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "early.jsonl"})
    data = again.structured_content or {}
    assert data["import_id"] == (parked.structured_content or {})["import_id"]
    assert (data["status"], data["accepted_count"]) == ("complete", 3)


async def test_subscribers_hear_that_a_dataset_changed(server: MCPServer, data_dir: Path) -> None:
    write_jsonl(data_dir / "r.jsonl", records(2))
    async with Client(server) as client:
        created = await ok(client, "create_dataset", {"name": "L", "fields": SCHEMA_FIELDS, "strict": False})
        dataset_id = (created.structured_content or {})["id"]
        uri = f"prolific://datasets/{dataset_id}"
        events: list[object] = []
        async with client.listen(resource_subscriptions=[uri]) as subscription:

            async def collect() -> None:
                async for event in subscription:
                    events.append(event)
                    return

            async with anyio.create_task_group() as tg:
                tg.start_soon(collect)
                await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
                with anyio.fail_after(10):
                    while not events:
                        await anyio.sleep(0.01)
    assert uri in repr(events[0])
