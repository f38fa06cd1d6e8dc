"""Fidelity to the real API, as an agent sees it through the MCP client (text and structured content): the dataset
version is the workspace's, the V3 and pending-schema flows on both kinds of workspace, a V3 re-upload not reported
on the previous file's status, and workspace lists read page by page (docs/prolific-api.md, What Prolific's CLI
and OpenAPI add)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from prolific_mcp.api import client as client_module
from prolific_mcp.sandbox import Pace, Sandbox
from prolific_mcp.server.app import build_server
from prolific_mcp.settings import Settings
from tests.server.conftest import SCHEMA_FIELDS, call, ok, records, text_of, write_jsonl

pytestmark = pytest.mark.anyio

DATASETS = "/api/v1/data-collection/datasets"


async def test_the_default_workspace_gives_v4_and_uploads_wait_for_the_first_schema(
    server: MCPServer, sandbox: Sandbox, data_dir: Path
) -> None:
    write_jsonl(data_dir / "early.jsonl", records(3))
    async with Client(server) as client:
        workspaces = await ok(client, "list_workspaces", {})
        listed = workspaces.structured_content or {}
        assert [w["id"] for w in listed["workspaces"]] == [sandbox.workspace_id, sandbox.legacy_workspace_id]
        assert listed["default_workspace_id"] == sandbox.workspace_id

        created = await ok(client, "create_dataset", {"name": "Unset"})
        data = created.structured_content or {}
        assert (data["version"], data["fields"], data["workspace_id"]) == (4, [], sandbox.workspace_id)
        assert "V4" in text_of(created) and "pending_schema" in text_of(created)
        posts = [r for r in sandbox.requests if r.method == "POST" and r.path == DATASETS]
        assert len(posts) == 1

        parked = await ok(client, "upload_file", {"dataset_id": data["id"], "path": "early.jsonl"})
        assert (parked.structured_content or {})["status"] == "pending_schema"
        released = await ok(client, "set_schema", {"dataset_id": data["id"], "fields": SCHEMA_FIELDS, "strict": False})
        assert (released.structured_content or {})["released_imports"]
        view = await ok(client, "get_dataset", {"dataset_id": data["id"]})
        assert (view.structured_content or {})["version"] == 4


async def test_a_workspace_without_typed_datasets_gives_v3_and_refuses_fields(
    server: MCPServer, sandbox: Sandbox, data_dir: Path
) -> None:
    (data_dir / "rows.csv").write_text("text,META_note\na,x\nb,y\n")
    async with Client(server) as client:
        refused = await call(
            client,
            "create_dataset",
            {"name": "Typed", "workspace_id": sandbox.legacy_workspace_id, "fields": SCHEMA_FIELDS},
        )
        assert refused.is_error
        text = text_of(refused)
        assert "typed (V4) datasets are a workspace feature" in text and "Nothing was created" in text
        assert f'create_dataset(name="Typed", workspace_id="{sandbox.legacy_workspace_id}")' in text

        created = await ok(client, "create_dataset", {"name": "Legacy", "workspace_id": sandbox.legacy_workspace_id})
        data = created.structured_content or {}
        assert (data["version"], data["status"], data["fields"]) == (3, "UNINITIALISED", [])
        assert "V3 (legacy CSV)" in text_of(created) and "no typed datasets" in text_of(created)

        schema = await call(client, "set_schema", {"dataset_id": data["id"], "fields": SCHEMA_FIELDS, "strict": False})
        assert schema.is_error and "V3" in text_of(schema)
        uploaded = await ok(client, "upload_file", {"dataset_id": data["id"], "path": "rows.csv"})
        assert (uploaded.structured_content or {})["status"] == "complete" and "READY" in text_of(uploaded)


@pytest.fixture
def slow_v3(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox whose imports take at least 1.5 s to process, so a status read right after a PUT is early."""
    with Sandbox.start(state_dir=tmp_path / "slow", pace=Pace(queued=0.0, processing=1.5)) as sbx:
        yield sbx


async def test_a_v3_reupload_is_not_reported_on_the_previous_files_ready(
    slow_v3: Sandbox, settings: Settings, data_dir: Path
) -> None:
    """Right after the second file's PUT, the status still answers the first file's READY (as Prolific may): the
    upload is reported when the second file is in, not before."""
    (data_dir / "first.csv").write_text("text\none\ntwo\nthree\n")
    (data_dir / "second.csv").write_text("text,META_note\na,x\nb,y\n")
    server = build_server(settings, sandbox_url=slow_v3.url)
    async with Client(server) as client:
        created = await ok(client, "create_dataset", {"name": "Legacy", "workspace_id": slow_v3.legacy_workspace_id})
        dataset_id = (created.structured_content or {})["id"]
        first = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "first.csv"})
        assert (first.structured_content or {})["status"] == "complete"

        slow_v3.faults.add(
            f"GET {DATASETS}/{dataset_id}/status",
            status=200,
            body='{"status": "READY"}',
            content_type="application/json",
            times=2,
        )
        second = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "second.csv"})
        data = second.structured_content or {}
        assert (data["status"], data["finished"]) == ("complete", True)
        assert "READY with second.csv" in text_of(second)
        assert slow_v3.faults.unused() == []
        view = await ok(client, "get_dataset", {"dataset_id": dataset_id})
        shown = view.structured_content or {}
        assert (shown["status"], shown["total_datapoint_count"]) == ("READY", 2)  # the second file's rows, done


async def test_workspaces_are_read_page_by_page(
    server: MCPServer, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "PAGE_SIZE", 1)
    for i in range(2):
        sandbox.seed_workspace(f"Extra {i}")
    async with Client(server) as client:
        listed = await ok(client, "list_workspaces", {})
    titles = [w["title"] for w in (listed.structured_content or {})["workspaces"]]
    assert len(titles) == 4 and titles[2:] == ["Extra 0", "Extra 1"]
    assert "Extra 1" in text_of(listed)
    pages = [r.query for r in sandbox.requests if r.path == "/api/v1/workspaces/"]
    assert pages == [f"limit=1&offset={i}" for i in range(4)]
