"""Every call ends with an answer an agent can act on (issue items: Retry-After while watching, an upload that
succeeded always names its import and the next call, unexpected exceptions, an unusable state directory).

Through the MCP client, against the sandbox and its fault plan.
"""

from __future__ import annotations

import io
from pathlib import Path

import anyio
import pytest
from mcp import Client

from prolific_mcp.doctor import run_doctor
from prolific_mcp.operations import datasets as dataset_ops
from prolific_mcp.sandbox import Sandbox
from prolific_mcp.server.app import build_server
from prolific_mcp.settings import Settings
from tests.reliability.conftest import api_dataset
from tests.server.conftest import call, make_settings, records, text_of, write_jsonl

pytestmark = pytest.mark.anyio

IMPORT_GETS = "GET /api/v1/data-collection/datasets/*/imports/*"


def _import_gets(sbx: Sandbox) -> int:
    return len([r for r in sbx.requests if r.method == "GET" and "/imports/" in r.path])


async def test_retry_after_is_honoured_by_the_background_watch_and_the_answer_names_the_import(
    data_dir: Path, sandbox: Sandbox, settings: Settings
) -> None:
    """Every import status answers 429 with `Retry-After: 60`: during the call's 8 s wait the watch asks once
    (the schedule alone would ask four or five times), and the call ends with the import id and the exact
    get_import_status call, not an error."""
    write_jsonl(data_dir / "r.jsonl", records(20))
    dataset_id = await api_dataset(sandbox, "answers")
    sandbox.faults.add(IMPORT_GETS, server="api", action="respond", status=429, retry_after="60", times=None)
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(60):
        async with Client(server) as client:
            result = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl", "wait_seconds": 8})
            asked = _import_gets(sandbox)
    assert not result.is_error, text_of(result)
    data = result.structured_content or {}
    assert data["import_id"] and data["finished"] is False
    assert data["next_call"]["tool"] == "get_import_status"
    assert data["next_call"]["arguments"]["import_id"] == data["import_id"]
    assert asked == 1, f"Retry-After: 60 honoured while watching ({asked} status requests in the wait)"


async def test_a_watch_that_ends_on_an_error_still_names_the_import_and_the_next_call(
    data_dir: Path, sandbox: Sandbox, settings: Settings
) -> None:
    """The file is uploaded, then every status request is refused (403): the call is not an error without an
    import id; it names the import, says what stopped, and gives the get_import_status call."""
    write_jsonl(data_dir / "r.jsonl", records(20))
    dataset_id = await api_dataset(sandbox, "answers")
    sandbox.faults.add(IMPORT_GETS, server="api", action="respond", status=403, times=None)
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(60):
        async with Client(server) as client:
            result = await call(
                client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl", "wait_seconds": 20}
            )
    assert not result.is_error, text_of(result)
    data = result.structured_content or {}
    text = text_of(result)
    assert data["import_id"] and data["import_id"] in text
    assert data["next_call"]["tool"] == "get_import_status"
    assert "stopped on an error" in text and "get_import_status" in text


async def test_an_unexpected_exception_names_the_tool_and_the_next_step(
    sandbox: Sandbox, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("something no operation expected")

    monkeypatch.setattr(dataset_ops, "get_dataset", broken)
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(30):
        async with Client(server) as client:
            result = await client.call_tool("get_dataset", {"dataset_id": "0192a3b5-e8f9-7a0b-1c2d-3e4f5a6b7c8d"})
            inline = await client.call_tool(
                "upload_file",
                {"dataset_id": "0192a3b5-e8f9-7a0b-1c2d-3e4f5a6b7c8d", "content": "{}\n", "filename": "a\x00.jsonl"},
            )
    text = text_of(result)
    assert result.is_error
    assert "get_dataset failed unexpectedly" in text and "something no operation expected" in text
    assert "Next: call get_dataset again" in text
    assert inline.is_error and "filename contains a NUL character" in text_of(inline)


async def test_an_unusable_state_directory_names_the_variable_through_the_tools(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox
) -> None:
    """The state directory cannot be created (a file stands where a folder must be; this holds even for root):
    every tool that needs it says which folder, why, and PROLIFIC_MCP_STATE_DIR."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    settings = make_settings(tmp_path, data_dir, PROLIFIC_MCP_STATE_DIR=str(blocker / "state"))
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(30):
        async with Client(server) as client:
            result = await client.call_tool("list_datasets", {})
            write_jsonl(data_dir / "r.jsonl", records(2))
            upload = await client.call_tool(
                "upload_file", {"dataset_id": "0192a3b5-e8f9-7a0b-1c2d-3e4f5a6b7c8d", "path": "r.jsonl"}
            )
    for answer in (result, upload):
        assert answer.is_error
        assert "PROLIFIC_MCP_STATE_DIR" in text_of(answer), text_of(answer)


async def test_a_damaged_ledger_is_said_once_by_the_tools_and_by_doctor(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox, settings: Settings
) -> None:
    """B6 through the client: a ledger of garbage is moved aside at start; the first result says so, the next
    does not; `doctor` run before the server warns that it is damaged (and the server replaces it)."""
    ledger = settings.state_dir / "sandbox" / "ledger.sqlite3"
    ledger.parent.mkdir(parents=True)
    ledger.write_bytes(b"not a database " * 500)
    env = {
        "HOME": str(tmp_path),
        "PROLIFIC_MCP_STATE_DIR": str(settings.state_dir),
        "PROLIFIC_MCP_ALLOWED_DIRS": str(data_dir),
    }
    out = io.StringIO()
    await anyio.to_thread.run_sync(lambda: run_doctor(environ=env, cwd=data_dir, timeout=5.0, out=out, mode="sandbox"))
    (said,) = [line for line in out.getvalue().splitlines() if line.split()[1:2] == ["ledger"]]
    assert said.split()[0] == "warn" and "is damaged" in said, out.getvalue()
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(30):
        async with Client(server) as client:
            first = await call(client, "list_datasets", {})
            second = await call(client, "list_datasets", {})
    assert "The local upload ledger was damaged" in text_of(first)
    assert "ledger was damaged" not in text_of(second)
    assert len(list(ledger.parent.glob("ledger.sqlite3.damaged-*"))) == 1, "moved aside once, with its time"
