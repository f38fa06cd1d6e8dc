"""What a model reads, whichever block its client shows it (docs/architecture.md, Rules an agent can rely on).

Claude Code and Codex give the model only the structured content; Gemini CLI, the OpenAI Agents SDK and LangChain
only the text. Every result is read both ways here: the structured `summary` is the text block, the next call is
data (`next_call`) and text (`next_step`, also in the text block), quoted file values sit under
`untrusted_file_excerpts`, and the sandbox notice is in both. Every follow-up is then made exactly as named.
Argument mistakes are refused before anything is sent, in words (never a validation dump).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, ValidationError

from prolific_mcp.sandbox import Sandbox
from prolific_mcp.server.app import build_server
from prolific_mcp.server.arguments import from_validation
from prolific_mcp.server.lifespan import SANDBOX_LINE
from tests.server.conftest import SCHEMA_FIELDS, call, make_settings, ok, records, text_of, write_jsonl

pytestmark = pytest.mark.anyio

DUMP_MARKS = ("pydantic", "validation error", "input_value", "type=", "For further information")


async def read_both(client: Client, result: CallToolResult) -> dict[str, Any]:
    """Check that the structured content alone says what the text says; the structured content."""
    assert not result.is_error, text_of(result)
    text = text_of(result)
    data = result.structured_content or {}
    assert data["summary"] == text
    assert text.startswith(SANDBOX_LINE)
    assert (data["notice"] or "").startswith(SANDBOX_LINE)
    if data["next_call"] is not None:
        step = data["next_step"]
        assert step and step in text, "the text block names the same call"
        assert step.startswith(data["next_call"]["tool"] + "(")
        tools = {t.name: t for t in (await client.list_tools()).tools}
        target = tools[data["next_call"]["tool"]].input_schema
        arguments, needs = data["next_call"]["arguments"], data["next_call"]["needs"]
        assert set(arguments) | set(needs) <= set(target["properties"])
        relaxed = {**target, "required": [r for r in target.get("required", []) if r not in needs]}
        jsonschema.validate(arguments, relaxed)  # the arguments as given are valid input for the named tool
    else:
        assert data["next_step"] is None
    if "Excerpts from your file" in text:
        assert data["untrusted_file_excerpts"], "excerpts in the text are in the structured content too"
        for excerpt in data["untrusted_file_excerpts"]:
            assert excerpt["text"][:40] in text
    return data


async def follow(client: Client, data: dict[str, Any], **extra: Any) -> CallToolResult:
    """Make the next call exactly as named (adding only what `needs` lists)."""
    next_call = data["next_call"]
    assert set(extra) == set(next_call["needs"])
    return await call(client, next_call["tool"], {**next_call["arguments"], **extra})


async def _dataset(client: Client, fields: Any = SCHEMA_FIELDS, strict: bool = True) -> str:
    created = await ok(client, "create_dataset", {"name": "Surface", "fields": fields, "strict": strict})
    data = await read_both(client, created)
    assert data["next_call"]["tool"] == ("upload_file" if fields else "set_schema")
    assert data["next_call"]["needs"] == (["path"] if fields else ["fields"])
    return str(data["id"])


async def test_reads_and_checks_say_the_same_in_both_blocks(
    server: MCPServer, data_dir: Path, client_mode: str
) -> None:
    write_jsonl(data_dir / "r.jsonl", records(3))
    write_jsonl(data_dir / "bad.jsonl", records(3, bad={1: {"photo": "not a link"}}))
    async with Client(server, mode=client_mode) as client:
        for tool in ("list_workspaces", "list_datasets"):
            assert (await read_both(client, await ok(client, tool, {})))["next_call"] is None

        suggested = await read_both(client, await ok(client, "suggest_schema", {"path": "r.jsonl"}))
        assert suggested["next_call"]["tool"] == "create_dataset"
        assert suggested["next_call"]["needs"] == ["name"]
        assert suggested["next_call"]["arguments"]["fields"] == suggested["fields"]
        assert all(set(f) == {"key", "type", "label"} for f in suggested["fields"])

        fresh = await read_both(
            client, await ok(client, "validate_file", {"path": "r.jsonl", "fields": SCHEMA_FIELDS, "strict": True})
        )
        assert (fresh["next_call"]["tool"], fresh["next_call"]["needs"]) == ("create_dataset", ["name"])

        dataset_id = await _dataset(client)
        clean = await read_both(
            client, await ok(client, "validate_file", {"path": "r.jsonl", "dataset_id": dataset_id})
        )
        assert clean["next_call"] == {
            "tool": "upload_file",
            "arguments": {"dataset_id": dataset_id, "path": "r.jsonl"},
            "needs": [],
        }
        flawed = await read_both(
            client, await ok(client, "validate_file", {"path": "bad.jsonl", "dataset_id": dataset_id})
        )
        assert flawed["expected_rejections"] == 1
        assert flawed["next_call"]["tool"] == "validate_file", "fix the file, then check it again"

        view = await read_both(client, await ok(client, "get_dataset", {"dataset_id": dataset_id}))
        assert [f["key"] for f in view["fields"]] == [f["key"] for f in SCHEMA_FIELDS]
        assert all(set(f) == {"key", "type", "label"} for f in view["fields"])
        copied = await ok(
            client, "set_schema", {"dataset_id": dataset_id, "fields": view["fields"], "strict": True, "dry_run": True}
        )
        assert (await read_both(client, copied))["changes"]["added"] == [], (
            "get_dataset's fields go back in as they are"
        )


async def test_every_import_outcome_names_its_follow_up(server: MCPServer, data_dir: Path, client_mode: str) -> None:
    write_jsonl(data_dir / "good.jsonl", records(4))
    write_jsonl(data_dir / "reviews.jsonl", records(6, bad={1: {"photo": "nope"}, 4: {"review": None}}))
    write_jsonl(data_dir / "bad.jsonl", records(3, bad={i: {"photo": "not a link"} for i in range(3)}))
    async with Client(server, mode=client_mode) as client:
        dataset_id = await _dataset(client)

        complete = await read_both(
            client, await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "good.jsonl"})
        )
        assert (complete["status"], complete["next_call"]) == ("complete", None)

        partial = await read_both(
            client, await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "reviews.jsonl"})
        )
        assert partial["status"] == "partial"
        assert partial["next_call"] == {
            "tool": "upload_file",
            "arguments": {"dataset_id": dataset_id, "path": partial["rejected_file"]},
            "needs": [],
        }
        assert partial["untrusted_file_excerpts"]
        assert {e["record"] for e in partial["untrusted_file_excerpts"]} <= {2, 5}

        failed = await read_both(
            client, await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "bad.jsonl"})
        )
        assert failed["status"] == "failed"
        assert failed["next_call"]["tool"] == "upload_file"
        assert Path(failed["next_call"]["arguments"]["path"]).name == "bad.jsonl", "the real path, not a placeholder"
        assert failed["next_call"]["needs"] == []

        status = await read_both(
            client,
            await ok(client, "get_import_status", {"dataset_id": dataset_id, "import_id": partial["import_id"]}),
        )
        assert status["status"] == "partial"
        assert status["next_call"]["tool"] == "upload_file"

        fixed = [
            {**r, "photo": "https://img.example.com/fixed.png", "review": r.get("review", "fixed")}
            for r in records(6)[1:5:3]
        ]
        write_jsonl(Path(partial["rejected_file"]), fixed)
        again = await read_both(client, await follow(client, partial))
        assert again["status"] == "complete"


async def test_pending_schema_names_the_exact_set_schema_call(
    server: MCPServer, data_dir: Path, client_mode: str
) -> None:
    write_jsonl(data_dir / "early.jsonl", records(4))
    async with Client(server, mode=client_mode) as client:
        dataset_id = await _dataset(client, fields=[], strict=False)
        view = await read_both(client, await ok(client, "get_dataset", {"dataset_id": dataset_id}))
        assert (view["next_call"]["tool"], view["next_call"]["needs"]) == ("set_schema", ["fields"])

        parked = await read_both(
            client, await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "early.jsonl"})
        )
        assert parked["status"] == "pending_schema"
        assert parked["next_call"]["tool"] == "set_schema"
        assert parked["next_call"]["needs"] == []
        assert [f["key"] for f in parked["next_call"]["arguments"]["fields"]] == ["review", "photo", "source"]

        stored = await read_both(
            client, await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "early.jsonl"})
        )
        assert stored["from_ledger"] is True
        assert stored["next_call"] == parked["next_call"]

        applied = await read_both(client, await follow(client, parked))
        assert applied["released_imports"] == [parked["import_id"]]
        assert applied["next_call"]["tool"] == "get_import_status"
        assert applied["next_call"]["arguments"]["import_id"] == parked["import_id"]
        followed = await read_both(client, await follow(client, applied))
        assert followed["status"] == "complete"


async def test_schema_changes_and_appends_name_their_follow_ups(
    server: MCPServer, data_dir: Path, client_mode: str
) -> None:
    write_jsonl(data_dir / "r.jsonl", records(3))
    async with Client(server, mode=client_mode) as client:
        dataset_id = await _dataset(client)
        await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
        fewer = [f for f in SCHEMA_FIELDS if f["key"] != "source"]
        dry = await read_both(
            client,
            await ok(
                client, "set_schema", {"dataset_id": dataset_id, "fields": fewer, "strict": False, "dry_run": True}
            ),
        )
        assert dry["applied"] is False
        assert dry["next_call"]["arguments"]["allow_destructive"] is True, "the data makes the change need consent"
        assert [f["key"] for f in dry["next_call"]["arguments"]["fields"]] == ["review", "photo"]
        applied = await read_both(client, await follow(client, dry))
        assert applied["applied"] is True
        assert (applied["next_call"]["tool"], applied["next_call"]["needs"]) == ("upload_file", ["path"])

        good = await read_both(
            client, await ok(client, "append_records", {"dataset_id": dataset_id, "records": records(2, start=50)})
        )
        assert (good["accepted_count"], good["next_call"]) == (2, None)
        rejected = await read_both(
            client,
            await ok(
                client,
                "append_records",
                {"dataset_id": dataset_id, "records": records(2, start=60, bad={0: {"photo": "nope"}})},
            ),
        )
        assert rejected["rejected_count"] == 1
        assert rejected["next_call"] == {
            "tool": "append_records",
            "arguments": {"dataset_id": dataset_id},
            "needs": ["records"],
        }


async def test_handoffs_name_the_real_path_and_every_clamp_is_said(
    tmp_path: Path, data_dir: Path, client_mode: str
) -> None:
    with Sandbox.start(state_dir=tmp_path / "slow", pace="default") as sbx:
        server = build_server(make_settings(tmp_path, data_dir), sandbox_url=sbx.url)
        write_jsonl(data_dir / "r.jsonl", records(30))
        async with Client(server, mode=client_mode) as client:
            dataset_id = await _dataset(client)
            early = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl", "wait_seconds": -5})
            data = await read_both(client, early)
            assert data["finished"] is False
            assert data["adjusted_arguments"] == ["wait_seconds=-5 is below 0, so 0 was used (an answer at once)."]
            assert "Note: wait_seconds=-5 is below 0" in text_of(early)
            handoff = data["next_call"]
            assert handoff["needs"] == [] and "<" not in data["next_step"], "no placeholder: the server knows the path"
            if handoff["tool"] == "upload_file":
                assert Path(handoff["arguments"]["path"]).name == "r.jsonl"
            else:
                assert handoff["arguments"]["import_id"] == data["import_id"]
            assert handoff["arguments"]["wait_seconds"] == 30  # the configured wait (PROLIFIC_MCP_WAIT_SECONDS)

            sbx.faults.add("POST */datapoints", status=409, times=1)  # the dataset is held (an import runs)
            blocked = await call(
                client, "append_records", {"dataset_id": dataset_id, "records": records(1, start=90), "wait_seconds": 0}
            )
            said = text_of(blocked)
            assert blocked.is_error and "nothing was appended" in said, said
            assert "get_import_status(" in said or f'get_dataset(dataset_id="{dataset_id}")' in said, said
            assert "then call append_records again with the same records" in said

            with anyio.fail_after(60):
                while not data["finished"]:
                    step = await call(
                        client, data["next_call"]["tool"], {**data["next_call"]["arguments"], "wait_seconds": 5000}
                    )
                    data = await read_both(client, step)
                    assert data["adjusted_arguments"] == [
                        "wait_seconds=5000 is over the maximum of 900, so this call waited at most 900 s."
                    ]
            assert data["status"] == "complete"


async def test_unknown_arguments_are_refused_before_anything_is_sent(
    server: MCPServer, sandbox: Sandbox, data_dir: Path, client_mode: str
) -> None:
    write_jsonl(data_dir / "r.jsonl", records(2))
    async with Client(server, mode=client_mode) as client:
        await ok(client, "list_workspaces", {})
        before = len(sandbox.requests)
        api_shape = {"strict": False, "fields": {"review": {"type": "text", "label": "Review"}}}
        schema = await call(client, "create_dataset", {"name": "API shape", "schema": api_shape})
        typo = await call(client, "create_dataset", {"name": "Typo", "feilds": SCHEMA_FIELDS})
        overwrite = await call(client, "upload_file", {"dataset_id": "x" * 24, "path": "r.jsonl", "overwrite": True})
        for result, wrong, meant in (
            (schema, "schema", "fields"),
            (typo, "feilds", "fields"),
            (overwrite, "overwrite", "force"),
        ):
            text = text_of(result)
            assert result.is_error and result.structured_content is None
            assert f"no argument '{wrong}'" in text and f"use {meant}" in text, text
            assert "Its arguments are:" in text and "Nothing was sent." in text
            assert SANDBOX_LINE in text
        assert 'fields=[{"key": "review", "type": "text", "label": "Review"}], strict=false' in text_of(schema)
        assert len(sandbox.requests) == before, "nothing reached the API"
        listed = await ok(client, "list_datasets", {})
        assert (listed.structured_content or {})["datasets"] == []


@pytest.mark.parametrize(
    ("tool", "arguments", "named"),
    [
        ("append_records", {"dataset_id": "x" * 24, "records": ["review"]}, "records item 1"),
        ("append_records", {"dataset_id": "x" * 24, "records": [["review", "Great"]]}, "records item 1"),
        ("append_records", {"dataset_id": "x" * 24, "records": {"review": "Great"}}, "records must be a list"),
        ("set_schema", {"dataset_id": "x" * 24, "fields": ["review"], "strict": False}, "fields item 1"),
        (
            "set_schema",
            {"dataset_id": "x" * 24, "fields": [{"name": "review", "type": "text"}], "strict": False},
            "did you mean key",
        ),
        (
            "set_schema",
            {"dataset_id": "x" * 24, "fields": {"review": {"type": "text"}}, "strict": False},
            '"key": "review"',
        ),
        (
            "set_schema",
            {"dataset_id": "x" * 24, "fields": [{"key": "r", "type": "words"}], "strict": False},
            "one of text",
        ),
        ("get_import_status", {"dataset_id": "x" * 24, "import_id": "y" * 24, "wait_seconds": "abc"}, "wait_seconds"),
        ("get_import_status", {"dataset_id": "x" * 24, "import_id": "y" * 24, "wait_seconds": None}, "leave it out"),
        ("create_dataset", {"name": None}, "name"),
        ("upload_file", {"path": "r.jsonl"}, "dataset_id is missing"),
        ("validate_file", {"path": "r.jsonl", "strict": "maybe"}, "true or false"),
    ],
)
async def test_argument_errors_name_the_argument_shape_and_example(
    server: MCPServer, sandbox: Sandbox, client_mode: str, tool: str, arguments: dict[str, Any], named: str
) -> None:
    async with Client(server, mode=client_mode) as client:
        before = len(sandbox.requests)
        result = await call(client, tool, arguments)
    text = text_of(result)
    assert result.is_error, text
    assert named in text, text
    assert "e.g." in text or "pass fields=" in text or "one of" in text, text
    assert text.startswith(f"Error executing tool {tool}: {SANDBOX_LINE}")
    assert text.endswith("Nothing was sent.")
    assert not [mark for mark in DUMP_MARKS if mark in text], text
    assert len(sandbox.requests) == before


async def test_a_legacy_v3_dataset_reads_the_same_both_ways(
    server: MCPServer, sandbox: Sandbox, data_dir: Path, client_mode: str
) -> None:
    (data_dir / "v3.csv").write_text("id,text,META_source\n1,hello,web\n2,world,app\n")
    async with Client(server, mode=client_mode) as client:
        created = await read_both(
            client, await ok(client, "create_dataset", {"name": "Legacy", "workspace_id": sandbox.legacy_workspace_id})
        )
        assert created["version"] == 3
        assert (created["next_call"]["tool"], created["next_call"]["needs"]) == ("upload_file", ["path"])
        uploaded = await read_both(client, await follow(client, created, path="v3.csv"))
        assert (uploaded["status"], uploaded["next_call"]) == ("complete", None)


def test_a_validation_failure_past_the_checks_is_still_worded() -> None:
    """The last guard: should the SDK's argument model refuse what the checks let through, the agent still reads
    the argument, its shape and an example, never the library's dump."""

    class Arguments(BaseModel):
        wait_seconds: float

    schema = {"properties": {"wait_seconds": {"type": "number", "minimum": 0, "maximum": 900, "default": 30}}}
    with pytest.raises(ValidationError) as caught:
        Arguments.model_validate({"wait_seconds": "soon"})
    text = from_validation("get_import_status", schema, caught.value)
    assert text == "get_import_status: wait_seconds must be a number of seconds from 0 to 900, e.g. wait_seconds=30"
