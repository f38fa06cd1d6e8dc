"""The tools end to end against the sandbox over loopback, through the SDK's Client in memory (both eras)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import ResourceTemplateReference

from prolific_mcp.sandbox import Sandbox
from prolific_mcp.server.app import build_server
from prolific_mcp.settings import Settings
from prolific_mcp.uploads.ledger import Ledger
from tests.server.conftest import SCHEMA_FIELDS, call, make_settings, ok, records, text_of, write_jsonl

pytestmark = pytest.mark.anyio

SANDBOX = "SANDBOX: nothing here reaches Prolific."
SNAPSHOTS = Path(__file__).parent / "snapshots"


def _normalise(text: str) -> str:
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", text)
    return re.sub(r"/\S*/data/", "<data>/", text)


def _snapshot(name: str, text: str) -> None:
    import os

    path = SNAPSHOTS / f"{name}.txt"
    rendered = _normalise(text) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == rendered, f"summary {name} changed; UPDATE_SNAPSHOTS=1 to accept"


async def _dataset(client: Client, fields: Any = SCHEMA_FIELDS, strict: bool = True) -> str:
    created = await ok(client, "create_dataset", {"name": "Reviews", "fields": fields, "strict": strict})
    assert text_of(created).startswith(SANDBOX)
    assert (created.structured_content or {})["mode"] == "sandbox"
    return str((created.structured_content or {})["id"])


async def test_create_upload_partial_with_summary_file_and_resource(
    server: MCPServer, data_dir: Path, client_mode: str
) -> None:
    rows = records(12, bad={3: {"photo": "ftp://x/y.png"}, 7: {"review": None}, 9: {"review": "r" * 10_001}})
    write_jsonl(data_dir / "reviews.jsonl", rows)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(server, mode=client_mode) as client:
        dataset_id = await _dataset(client)
        result = await ok(
            client, "upload_file", {"dataset_id": dataset_id, "path": "reviews.jsonl"}, progress_callback=on_progress
        )
        data = result.structured_content or {}
        assert (data["status"], data["finished"], data["accepted_count"], data["rejected_count"]) == (
            "partial",
            True,
            9,
            3,
        )
        assert sum(g["count"] for g in data["groups"]) == 3
        assert {(g["field"], tuple(g["records"])) for g in data["groups"]} == {
            ("photo", (4,)),
            ("review", (8,)),
            ("review", (10,)),
        }
        assert data["rejected_written"] == 3
        rejected = Path(data["rejected_file"])
        assert rejected.name == "reviews.rejected.jsonl"
        assert [json.loads(line)["source"] for line in rejected.read_text().splitlines()] == ["s0", "s1", "s0"]
        text = text_of(result)
        assert text.startswith(SANDBOX)
        assert len(text) <= 2000 + len(SANDBOX) + 1
        links = [c for c in result.content if getattr(c, "type", "") == "resource_link"]
        assert {str(link.uri) for link in links} == {
            f"prolific://datasets/{dataset_id}",
            f"prolific://datasets/{dataset_id}/imports/{data['import_id']}",
        }
        view = await client.read_resource(f"prolific://datasets/{dataset_id}")
        body = view.contents[0].text  # type: ignore[union-attr]
        assert "Datapoints: 9" in body
        assert "| photo | image_url |" in body
        schema = await client.read_resource(f"prolific://datasets/{dataset_id}/schema")
        listed = json.loads(schema.contents[0].text)["fields"]  # type: ignore[union-attr]
        assert {"key": "photo", "type": "image_url", "label": ""} in listed
        job = await client.read_resource(f"prolific://datasets/{dataset_id}/imports/{data['import_id']}")
        assert json.loads(job.contents[0].text)["status"] == "partial"  # type: ignore[union-attr]
    values = [p for p, _, _ in seen]
    assert values == sorted(values)
    assert len(set(values)) == len(values), "progress values must strictly increase"
    assert values[-1] == 100
    assert all(total == 100 for _, total, _ in seen)
    assert all(message and not message.startswith("{") for _, _, message in seen)
    _snapshot("partial", text)


async def test_complete_then_the_same_file_returns_the_stored_outcome(server: MCPServer, data_dir: Path) -> None:
    write_jsonl(data_dir / "good.jsonl", records(5))
    async with Client(server) as client:
        dataset_id = await _dataset(client)
        first = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "good.jsonl"})
        assert (first.structured_content or {})["status"] == "complete"
        _snapshot("complete", text_of(first))
        again = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "good.jsonl"})
        data = again.structured_content or {}
        assert data["from_ledger"] is True
        assert data["import_id"] == (first.structured_content or {})["import_id"]
        assert "already imported" in text_of(again)
        forced = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "good.jsonl", "force": True})
        forced_data = forced.structured_content or {}
        assert forced_data["import_id"] != data["import_id"]
        assert forced_data["duplicate_count"] == 5
        assert "nothing new was added" in text_of(forced)


async def test_failed_when_every_record_is_rejected(server: MCPServer, data_dir: Path) -> None:
    write_jsonl(data_dir / "bad.jsonl", records(3, bad={i: {"photo": "not a link"} for i in range(3)}))
    async with Client(server) as client:
        dataset_id = await _dataset(client)
        result = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "bad.jsonl"})
    data = result.structured_content or {}
    assert (data["status"], data["rejected_count"]) == ("failed", 3)
    assert "nothing was imported" in text_of(result)
    _snapshot("failed", text_of(result))


async def test_pending_schema_then_set_schema_releases_the_parked_import(server: MCPServer, data_dir: Path) -> None:
    write_jsonl(data_dir / "early.jsonl", records(4))
    async with Client(server) as client:
        dataset_id = await _dataset(client, fields=[], strict=False)
        parked = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "early.jsonl"})
        data = parked.structured_content or {}
        assert data["status"] == "pending_schema"
        assert "set_schema(" in text_of(parked)
        _snapshot("pending_schema", text_of(parked))
        again = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "early.jsonl"})
        assert "set_schema" in text_of(again)
        updated = await ok(client, "set_schema", {"dataset_id": dataset_id, "fields": SCHEMA_FIELDS, "strict": False})
        assert (updated.structured_content or {})["released_imports"] == [data["import_id"]]
        status = await ok(
            client, "get_import_status", {"dataset_id": dataset_id, "import_id": data["import_id"], "wait_seconds": 10}
        )
        assert (status.structured_content or {})["status"] == "complete"


async def test_set_schema_diff_dry_run_destructive_guard_and_migration(server: MCPServer, data_dir: Path) -> None:
    write_jsonl(data_dir / "r.jsonl", records(6))
    async with Client(server) as client:
        dataset_id = await _dataset(client)
        await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
        changed = [{"key": "review", "type": "text"}, {"key": "photo", "type": "text"}]
        dry = await ok(
            client, "set_schema", {"dataset_id": dataset_id, "fields": changed, "strict": False, "dry_run": True}
        )
        assert (dry.structured_content or {})["changes"]["removed"] == ["source"]
        assert (dry.structured_content or {})["applied"] is False
        refused = await call(client, "set_schema", {"dataset_id": dataset_id, "fields": changed, "strict": False})
        assert refused.is_error
        assert "allow_destructive=true" in text_of(refused)
        applied = await ok(
            client,
            "set_schema",
            {"dataset_id": dataset_id, "fields": changed, "strict": False, "allow_destructive": True},
        )
        migration = (applied.structured_content or {})["migration"]
        assert migration["status"] == "complete"
        moved = await call(
            client,
            "set_schema",
            {"dataset_id": dataset_id, "fields": [*changed, {"key": "g", "type": "task_group_id"}], "strict": False},
        )
        assert moved.is_error
        assert "task_group_id" in text_of(moved)


async def test_stringified_arguments_are_accepted(server: MCPServer, data_dir: Path) -> None:
    write_jsonl(data_dir / "r.jsonl", records(2))
    async with Client(server) as client:
        created = await ok(
            client, "create_dataset", {"name": "S", "fields": json.dumps(SCHEMA_FIELDS), "strict": "true"}
        )
        dataset_id = (created.structured_content or {})["id"]
        appended = await ok(
            client, "append_records", {"dataset_id": dataset_id, "records": json.dumps(records(3, start=10))}
        )
        assert (appended.structured_content or {})["accepted_count"] == 3
        up = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl", "wait_seconds": "20"})
        assert (up.structured_content or {})["status"] == "complete"


async def test_inline_content_upload(server: MCPServer) -> None:
    content = "".join(json.dumps(r) + "\n" for r in records(3, bad={1: {"photo": "x"}}))
    async with Client(server) as client:
        dataset_id = await _dataset(client)
        result = await ok(
            client, "upload_file", {"dataset_id": dataset_id, "content": content, "filename": "inline.jsonl"}
        )
    data = result.structured_content or {}
    assert (data["status"], data["rejected_count"], data["rejected_file"]) == ("partial", 1, None)
    assert "came inline" in text_of(result)


async def test_bad_inputs_are_refused_before_any_request(
    server: MCPServer, data_dir: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.jsonl"
    write_jsonl(outside, records(1))
    (data_dir / "link.jsonl").symlink_to(outside)
    (data_dir / "notes.txt").write_text("hello")
    write_jsonl(data_dir / "ok.jsonl", records(1))
    async with Client(server) as client:
        dataset_id = await _dataset(client)
        sandbox.requests.clear()
        cases: list[tuple[dict[str, Any], str]] = [
            ({"path": str(outside)}, "outside the allowed directories"),
            ({"path": "../outside.jsonl"}, "outside the allowed directories"),
            ({"path": "link.jsonl"}, "outside the allowed directories"),
            ({"path": "/etc/passwd"}, "outside the allowed directories"),
            ({"path": "notes.txt"}, "not a .jsonl"),
            ({"path": "missing.jsonl"}, "no file at"),
            ({}, "either path"),
            ({"path": "ok.jsonl", "content": "{}", "filename": "a.jsonl"}, "not both"),
            ({"content": "{}"}, "needs a filename"),
            ({"path": "ok.jsonl", "format": "xml"}, "not supported"),
        ]
        for args, needle in cases:
            result = await call(client, "upload_file", {"dataset_id": dataset_id, **args})
            assert result.is_error, args
            assert needle in text_of(result), (args, text_of(result))
            assert SANDBOX in text_of(result)
        bad_id = await call(client, "upload_file", {"dataset_id": "../x", "path": "ok.jsonl"})
        assert bad_id.is_error
        assert "not a valid Prolific id" in text_of(bad_id)
    assert sandbox.requests == [] or all(r.method == "GET" and "/upload-url/" not in r.path for r in sandbox.requests)
    assert not [r for r in sandbox.requests if r.server == "s3"]


async def test_the_handoff_returns_the_next_call_while_the_upload_finishes(tmp_path: Path, data_dir: Path) -> None:
    with Sandbox.start(state_dir=tmp_path / "slow", pace="default") as sbx:
        server = build_server(make_settings(tmp_path, data_dir), sandbox_url=sbx.url)
        write_jsonl(data_dir / "r.jsonl", records(20))
        async with Client(server) as client:
            dataset_id = await _dataset(client)
            early = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl", "wait_seconds": 0})
            data = early.structured_content or {}
            assert data["finished"] is False
            assert data["next_call"]["tool"] in ("get_import_status", "upload_file")
            assert data["next_step"] in text_of(early)
            with anyio.fail_after(30):
                while True:
                    again = await ok(
                        client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl", "wait_seconds": 5}
                    )
                    if (again.structured_content or {})["finished"]:
                        break
            assert (again.structured_content or {})["status"] == "complete"
            assert (again.structured_content or {})["import_id"] == data["import_id"] or data["import_id"] is None
            puts = [r for r in sbx.requests if r.server == "s3"]
            assert len(puts) == 1, "the same file must not be uploaded twice"


async def test_cancel_mid_put_marks_the_ledger_cancelled(tmp_path: Path, data_dir: Path, settings: Settings) -> None:
    with Sandbox.start(state_dir=tmp_path / "s", pace="fast") as sbx:
        sbx.faults.add("PUT *", action="stall", seconds=30, times=1)
        server = build_server(settings, sandbox_url=sbx.url)
        write_jsonl(data_dir / "r.jsonl", records(50))
        async with Client(server) as client:
            dataset_id = await _dataset(client)
            with anyio.move_on_after(2):
                await client.call_tool("upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
            ledger = Ledger(settings.state_dir / "sandbox" / "ledger.sqlite3")
            with anyio.fail_after(10):
                while not ledger.uploads_in_state("sandbox", "cancelled"):
                    await anyio.sleep(0.05)
            (row,) = ledger.uploads_in_state("sandbox", "cancelled")
            assert row.import_id
            sbx.faults.clear()
            again = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
            assert (again.structured_content or {})["status"] == "complete"


async def test_cancel_mid_poll_lets_the_import_continue(tmp_path: Path, data_dir: Path, settings: Settings) -> None:
    with Sandbox.start(state_dir=tmp_path / "s", pace="default") as sbx:
        server = build_server(settings, sandbox_url=sbx.url)
        write_jsonl(data_dir / "r.jsonl", records(20))
        async with Client(server) as client:
            dataset_id = await _dataset(client)
            with anyio.move_on_after(3):
                with anyio.fail_after(30):
                    while not [r for r in sbx.requests if r.server == "s3"]:
                        await anyio.sleep(0.02)
                await client.call_tool("upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
            # the PUT may or may not have finished when the call was cancelled; the next call resumes either way
            result = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl", "wait_seconds": 20})
            assert (result.structured_content or {})["status"] == "complete"


async def test_orphan_from_a_crash_is_uploaded_again_and_reported(
    server: MCPServer, data_dir: Path, settings: Settings
) -> None:
    import hashlib
    import time

    from prolific_mcp.uploads.ledger import UploadKey

    path = write_jsonl(data_dir / "r.jsonl", records(3))
    async with Client(server) as client:
        dataset_id = await _dataset(client)
        await ok(client, "list_workspaces", {})
        ledger = Ledger(settings.state_dir / "sandbox" / "ledger.sqlite3")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        await ok(client, "list_datasets", {})
        account = ledger._query("SELECT account_id FROM datasets LIMIT 1")[0]["account_id"]
        key = UploadKey("sandbox", account, dataset_id, digest, path.stat().st_size)
        stale = ledger.record_url_issued(
            key, import_id="orphan-import-1", filename="r.jsonl", local_path=str(path), fmt="jsonl", record_count=3
        )
        # Left by a server on another host an hour ago: its owner cannot be checked, and it is long past live.
        ledger._db.execute(
            "UPDATE uploads SET updated_at = ?, owner = 'another-host:4242' WHERE id = ?",
            (time.time() - 3600, stale.id),
        )
        result = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
        data = result.structured_content or {}
        assert data["status"] == "complete"
        assert data["orphaned_imports"] == ["orphan-import-1"]
        assert "orphan-import-1" in text_of(result)


async def test_validate_and_suggest_and_list_tools(server: MCPServer, data_dir: Path) -> None:
    write_jsonl(data_dir / "r.jsonl", records(5, bad={2: {"photo": "nope"}}))
    async with Client(server) as client:
        suggestion = await ok(client, "suggest_schema", {"path": "r.jsonl"})
        fields = (suggestion.structured_content or {})["fields"]
        types = {f["key"]: f["type"] for f in fields}
        assert (types["photo"], types["review"]) == ("image_url", "text")
        checked = await ok(client, "validate_file", {"path": "r.jsonl", "fields": fields, "strict": True})
        data = checked.structured_content or {}
        assert (data["ok"], data["record_count"], data["expected_rejections"]) == (True, 5, 1)
        dataset_id = await _dataset(client)
        against = await ok(client, "validate_file", {"path": "r.jsonl", "dataset_id": dataset_id})
        assert (against.structured_content or {})["expected_rejections"] == 1
        workspaces = await ok(client, "list_workspaces", {})
        assert len((workspaces.structured_content or {})["workspaces"]) >= 1
        listed = await ok(client, "list_datasets", {})
        assert dataset_id in {d["id"] for d in (listed.structured_content or {})["datasets"]}
        shown = await ok(client, "get_dataset", {"dataset_id": dataset_id})
        assert (shown.structured_content or {})["version"] == 4
        missing = await call(client, "get_dataset", {"dataset_id": "0192a3b5-e8f9-7a0b-1c2d-000000000000"})
        assert missing.is_error
        assert "list_datasets" in text_of(missing)
        completion = await client.complete(
            ResourceTemplateReference(type="ref/resource", uri="prolific://datasets/{dataset_id}"),
            {"name": "dataset_id", "value": dataset_id[:4]},
        )
        assert dataset_id in completion.completion.values


async def test_prompt_walks_through_the_flow(server: MCPServer) -> None:
    async with Client(server) as client:
        prompt = await client.get_prompt("import_dataset", {"path": "reviews.jsonl"})
    text = prompt.messages[0].content.text  # type: ignore[union-attr]
    assert "suggest_schema" in text
    assert "upload_file" in text
