"""Datasets found through batches, workspace choice, migration summaries, and the demo end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from prolific_mcp.demo import drive
from prolific_mcp.sandbox import Sandbox
from tests.server.conftest import SCHEMA_FIELDS, ok, records, text_of, write_jsonl

pytestmark = pytest.mark.anyio


async def test_datasets_attached_to_batches_are_listed_with_their_source(server: MCPServer, sandbox: Sandbox) -> None:
    async with Client(server) as client:
        created = await ok(client, "create_dataset", {"name": "Mine", "fields": SCHEMA_FIELDS})
        mine = (created.structured_content or {})["id"]
        elsewhere = sandbox_dataset(sandbox)
        sandbox.seed_batch(sandbox.workspace_id, elsewhere, name="Batch from the web app")
        listed = await ok(client, "list_datasets", {"workspace_id": sandbox.workspace_id})
        sources = {d["id"]: d["source"] for d in (listed.structured_content or {})["datasets"]}
        assert sources[mine] == "created"
        assert sources[elsewhere] == "batch"
        resource = await client.read_resource("prolific://datasets")
        assert elsewhere in resource.contents[0].text  # type: ignore[union-attr]


def sandbox_dataset(sandbox: Sandbox) -> str:
    """A dataset created straight on the sandbox's API, as the Prolific web app would."""
    import httpx2

    response = httpx2.post(
        f"{sandbox.url}/api/v1/data-collection/datasets",
        json={
            "name": "Made elsewhere",
            "workspace_id": sandbox.workspace_id,
            "schema": {"strict": False, "fields": {}},
        },
        headers={"Authorization": "Token elsewhere"},
    )
    assert response.status_code == 201
    return str(response.json()["id"])


async def test_create_dataset_in_the_sandbox_uses_its_default_workspace_among_several(
    server: MCPServer, sandbox: Sandbox
) -> None:
    """The sandbox has several workspaces (its second has no typed datasets): without workspace_id the sandbox's
    default is used (docs/architecture.md, Modes and the sandbox process). Prolific mode asks which one
    (tests/operations/test_fidelity.py)."""
    other = sandbox.seed_workspace("Second lab")
    async with Client(server) as client:
        defaulted = await ok(client, "create_dataset", {"name": "Where?"})
        assert (defaulted.structured_content or {})["workspace_id"] == sandbox.workspace_id
        placed = await ok(client, "create_dataset", {"name": "Here", "workspace_id": other["id"]})
        assert (placed.structured_content or {})["workspace_id"] == other["id"]


async def test_a_partial_migration_is_summarised(server: MCPServer, data_dir: Path) -> None:
    write_jsonl(data_dir / "r.jsonl", records(4))
    async with Client(server) as client:
        created = await ok(client, "create_dataset", {"name": "M", "fields": SCHEMA_FIELDS, "strict": False})
        dataset_id = (created.structured_content or {})["id"]
        await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
        retyped = [{**f, "type": "image_url"} if f["key"] == "review" else f for f in SCHEMA_FIELDS]
        result = await ok(
            client,
            "set_schema",
            {"dataset_id": dataset_id, "fields": retyped, "strict": False, "allow_destructive": True},
        )
    migration = (result.structured_content or {})["migration"]
    assert migration["status"] == "partial"
    assert migration["failed_count"] == 4
    assert "set to null" in text_of(result)


async def test_the_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await drive(tmp_path) == 0
    out = capsys.readouterr().out
    assert "20 records accepted, 4 records rejected" in out
    assert "record 21" in out
    assert (tmp_path / "data" / "reviews.rejected.jsonl").exists()
    rejected = (tmp_path / "data" / "reviews.rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 4
    assert json.loads(rejected[0])["review_id"] == "R0005"
