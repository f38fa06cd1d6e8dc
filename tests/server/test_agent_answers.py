"""Answers an agent acts on, through the MCP client (text block and structured content both checked): keys that
do not match the schema, bounded summaries whose counts add up, diagnoses that name the real problem, progress
that says only what is true, V3 pre-flight refusals, and the follow-ups (docs/architecture.md, Files and
pre-flight, Summaries and limits, Progress)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult

from prolific_mcp.sandbox import Sandbox
from prolific_mcp.settings import Settings
from prolific_mcp.uploads.ledger import Ledger
from tests.server.conftest import call, ok, text_of, write_jsonl

pytestmark = pytest.mark.anyio

DATASETS = "/api/v1/data-collection/datasets"
SANDBOX_LINE = "SANDBOX: nothing here reaches Prolific."


def _dataset(
    sbx: Sandbox, fields: dict[str, Any] | None, *, strict: bool = False, legacy: bool = False, name: str = "Answers"
) -> str:
    """A dataset made straight in the sandbox (the API's own shapes), so these tests do not depend on how the
    create_dataset tool spells its fields."""
    body: dict[str, Any] = {
        "name": name,
        "workspace_id": sbx.legacy_workspace_id if legacy else sbx.workspace_id,
    }
    if fields is not None:
        body["schema"] = {"strict": strict, "fields": fields}
    with httpx2.Client(base_url=sbx.url, headers={"Authorization": "Token t"}, timeout=10) as api:
        answer = api.post(DATASETS, json=body)
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["id"])


def _body(result: CallToolResult) -> str:
    """The text block without the sandbox line."""
    text = text_of(result)
    return text.removeprefix(SANDBOX_LINE).lstrip("\n")


def _data(result: CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None
    return result.structured_content


def _shown_counts(text: str) -> int:
    """The records the text accounts for: each group's count, the 'not itemised' group and the '… and N more'."""
    total = sum(int(n.replace(",", "")) for n in re.findall(r"— ([\d,]+) records?", text))
    total += sum(int(n.replace(",", "")) for n in re.findall(r"not itemised by Prolific: ([\d,]+) records?", text))
    total += sum(int(n.replace(",", "")) for n in re.findall(r"… and [\d,]+ more causes? \(([\d,]+) records?", text))
    return total


def _cause_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"\d+\. ", line)]


def _s3_puts(sbx: Sandbox) -> int:
    return len(sbx.requests.for_server("s3"))


# ----- item 1: keys that do not match a non-strict schema --------------------------------------------------------

REVIEW_SCHEMA = {"review_text": {"type": "text", "label": "Review"}, "photo": {"type": "image_url"}}


async def test_a_file_that_shares_no_key_is_refused_before_sending_and_validate_says_the_same(
    server: MCPServer, sandbox: Sandbox, data_dir: Path
) -> None:
    dataset_id = _dataset(sandbox, REVIEW_SCHEMA)
    write_jsonl(data_dir / "other.jsonl", [{"text": f"t{i}", "url": f"u{i}"} for i in range(5)])
    async with Client(server) as client:
        upload = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "other.jsonl"})
        assert upload.is_error
        said = text_of(upload)
        assert "shares no key with the schema" in said and "empty datapoint" in said
        assert "text → review_text" in said and "Nothing was uploaded" in said
        assert "Complete" not in said
        checked = await ok(client, "validate_file", {"path": "other.jsonl", "dataset_id": dataset_id})
    assert _s3_puts(sandbox) == 0, "nothing may be sent"
    data = _data(checked)
    assert data["ok"] is False and "shares no key" in data["failure"]
    assert data["keys"]["likely_renames"] == {"text": "review_text"}
    assert set(data["keys"]["missing_keys"]) == {"review_text", "photo"}
    text = _body(checked)
    assert "It cannot be imported" in text and "shares no key with the schema" in text
    assert "No problems found" not in text


async def test_a_renamed_key_is_warned_with_both_lists_the_rename_and_the_calls_that_fix_it(
    server: MCPServer, sandbox: Sandbox, data_dir: Path
) -> None:
    dataset_id = _dataset(sandbox, {"review_text": {"type": "text"}, "source": {"type": "metadata"}})
    write_jsonl(data_dir / "renamed.jsonl", [{"text": f"Great {i}", "source": "web"} for i in range(4)])
    async with Client(server) as client:
        checked = await ok(client, "validate_file", {"path": "renamed.jsonl", "dataset_id": dataset_id})
        handed = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "renamed.jsonl", "wait_seconds": 0})
        assert not _data(handed)["finished"] and "text → review_text" in _body(handed)
        # The hand-off's next call follows the same (live) upload: its outcome carries the warning too.
        followed = await ok(
            client, "upload_file", {"dataset_id": dataset_id, "path": "renamed.jsonl", "wait_seconds": 30}
        )
        assert not _data(followed)["from_ledger"]
        uploaded = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "renamed.jsonl"})
    text = _body(checked)
    assert "No problems found" not in text
    assert "Schema keys in no record of the file: review_text." in text
    assert "File keys not in the schema (their values would be dropped): text." in text
    assert "text → review_text" in text
    assert "rename text to review_text in the file" in text
    assert f'set_schema(dataset_id="{dataset_id}", fields=[{{"key":"text","type":"text"}}' in text
    keys = _data(checked)["keys"]
    assert keys["missing_keys"] == ["review_text"] and keys["unknown_keys"] == ["text"]
    assert keys["likely_renames"] == {"text": "review_text"} and "set_schema(" in keys["warning"]
    assert _data(checked)["ok"] is True
    # The import goes through (a non-strict schema takes it), but its summary never stands without the warning.
    data = _data(uploaded)
    assert data["status"] == "complete"
    assert data["preflight"]["keys"]["likely_renames"] == {"text": "review_text"}
    assert data["from_ledger"], "the same file again: the stored outcome, still with the warning"
    for result in (followed, uploaded):
        said = _body(result)
        assert "Complete:" in said and "Warning: the file's keys and the schema's differ" in said
        assert "text → review_text" in said


async def test_under_a_strict_schema_the_refusal_names_the_likely_rename(
    server: MCPServer, sandbox: Sandbox, data_dir: Path
) -> None:
    dataset_id = _dataset(sandbox, {"review_text": {"type": "text"}, "source": {"type": "metadata"}}, strict=True)
    write_jsonl(data_dir / "strict.jsonl", [{"text": "Great", "source": "web"}])
    async with Client(server) as client:
        refused = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "strict.jsonl"})
        checked = await ok(client, "validate_file", {"path": "strict.jsonl", "dataset_id": dataset_id})
    assert refused.is_error and "no record has the field review_text" in text_of(refused)
    assert "text → review_text" in text_of(refused) and "Nothing was uploaded" in text_of(refused)
    assert _data(checked)["ok"] is False and _data(checked)["keys"]["likely_renames"] == {"text": "review_text"}
    assert "text → review_text" in _body(checked)
    assert _s3_puts(sandbox) == 0


# ----- item 4: summaries within their limits, whose counts add up --------------------------------------------------

MANY = {f"f{i}": {"type": "text"} for i in range(60)}


def _many_causes(n: int, *, good: int = 0) -> list[dict[str, Any]]:
    """n records, each rejected for a number in field f{i % 60} (60 causes), then `good` accepted ones."""
    return [{f"f{i % 60}": i} for i in range(n)] + [{"f0": f"fine {i}"} for i in range(good)]


async def test_validate_file_with_55_causes_stays_short_and_its_counts_add_up(
    server: MCPServer, sandbox: Sandbox, data_dir: Path
) -> None:
    dataset_id = _dataset(sandbox, MANY)
    write_jsonl(data_dir / "causes.jsonl", _many_causes(55))
    async with Client(server) as client:
        checked = await ok(client, "validate_file", {"path": "causes.jsonl", "dataset_id": dataset_id})
    text, data = _body(checked), _data(checked)
    assert len(text) <= 2000
    assert data["expected_rejections"] == 55
    assert len(data["groups"]) <= 50 and sum(g["count"] for g in data["groups"]) == 55
    assert _shown_counts(text) == 55, text
    first = _cause_lines(text)[0]
    assert "other causes" not in first, "a reason-less group is never shown first"
    assert "… and" in text and "more causes" in text


async def test_past_1000_rejections_the_part_not_itemised_is_always_shown(
    server: MCPServer, sandbox: Sandbox, data_dir: Path
) -> None:
    """1,500 rejected across 60 causes: Prolific (the sandbox) itemises 1,000, so 500 are not itemised; the text
    of upload_file and get_import_status shows that group and the counts written out add up to 1,500."""
    dataset_id = _dataset(sandbox, MANY)
    write_jsonl(data_dir / "lots.jsonl", _many_causes(1500, good=5))
    async with Client(server) as client:
        uploaded = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "lots.jsonl"})
        data = _data(uploaded)
        assert (data["status"], data["rejected_count"]) == ("partial", 1500)
        status = await ok(
            client,
            "get_import_status",
            {"dataset_id": dataset_id, "import_id": data["import_id"], "wait_seconds": 0},
        )
    for result in (uploaded, status):
        text, body = _body(result), _data(result)
        assert len(text) <= 2000, len(text)
        assert "not itemised by Prolific: 500 records" in text
        assert _shown_counts(text) == 1500, text
        assert sum(g["count"] for g in body["groups"]) == 1500 and len(body["groups"]) <= 50
        assert "other causes" not in _cause_lines(text)[0]


async def test_append_records_with_60_causes_uses_the_same_summary(
    server: MCPServer, sandbox: Sandbox, data_dir: Path
) -> None:
    dataset_id = _dataset(sandbox, MANY)
    async with Client(server) as client:
        appended = await ok(client, "append_records", {"dataset_id": dataset_id, "records": _many_causes(60)})
    text, data = _body(appended), _data(appended)
    assert data["rejected_count"] == 60
    assert len(text) <= 2000
    assert _shown_counts(text) == 60, text
    assert "— 1 record: record " in text, "record lists are phrased as in every other tool"
    assert "more causes" in text and sum(g["count"] for g in data["groups"]) == 60


# ----- item 5: the real problem named -----------------------------------------------------------------------------


async def test_diagnoses_name_the_real_problem(server: MCPServer, sandbox: Sandbox, data_dir: Path) -> None:
    dataset_id = _dataset(sandbox, {"a": {"type": "text"}, "b": {"type": "text"}}, strict=True)
    (data_dir / "image.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (data_dir / "folder.jsonl").mkdir()
    (data_dir / "rows.csv").write_text("a,b\n1,2\n3,4,5\n6,7\n", encoding="utf-8")
    (data_dir / "prose.jsonl").write_text("Dear team,\nhere are the reviews.\n", encoding="utf-8")
    (data_dir / "records.txt").write_text('{"a": "x", "b": "y"}\n', encoding="utf-8")
    async with Client(server) as client:
        png = await ok(client, "validate_file", {"path": "image.jsonl", "dataset_id": dataset_id})
        assert "binary file (a PNG image)" in _data(png)["failure"] and "UTF-16" not in _body(png)
        png_up = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "image.jsonl"})
        assert png_up.is_error and "binary file" in text_of(png_up) and "UTF-16" not in text_of(png_up)

        folder = await call(client, "validate_file", {"path": "folder.jsonl", "dataset_id": dataset_id})
        assert folder.is_error and "is a directory" in text_of(folder) and "format" not in text_of(folder)

        rows = await ok(client, "validate_file", {"path": "rows.csv", "dataset_id": dataset_id})
        text = _body(rows)
        assert "Row has 3 cells but the header has 2 columns" in text and "(line 3)" in text
        assert "as many cells as the header has columns" in text and "JSON" not in text
        assert _data(rows)["groups"][0]["lines"] == [3]

        prose = await ok(client, "validate_file", {"path": "prose.jsonl", "dataset_id": dataset_id})
        assert "not JSON Lines" in _data(prose)["failure"] and "no record has" not in _body(prose)
        prose_suggest = await call(client, "suggest_schema", {"path": "prose.jsonl"})
        assert prose_suggest.is_error and "not JSON Lines" in text_of(prose_suggest)

        # A name without a known extension: the advice names the parameter these tools have, and it works.
        txt = await call(client, "suggest_schema", {"path": "records.txt"})
        assert txt.is_error and "format='jsonl'" in text_of(txt)
        suggested = await ok(client, "suggest_schema", {"path": "records.txt", "format": "jsonl"})
        assert _data(suggested)["sampled_records"] == 1
        valid = await ok(client, "validate_file", {"path": "records.txt", "dataset_id": dataset_id, "format": "jsonl"})
        assert _data(valid)["ok"] is True and "No problems found" in _body(valid)


# ----- item 7: progress that is true, rounded, rising and not noisy ----------------------------------------------


async def test_progress_is_rounded_rising_true_and_bounded(server: MCPServer, sandbox: Sandbox, data_dir: Path) -> None:
    dataset_id = _dataset(sandbox, {"review": {"type": "text"}})
    write_jsonl(data_dir / "big.jsonl", [{"review": "x" * 200 + str(i)} for i in range(20_000)])
    seen: list[tuple[float, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message or ""))

    async with Client(server) as client:
        done = await ok(
            client, "upload_file", {"dataset_id": dataset_id, "path": "big.jsonl"}, progress_callback=on_progress
        )
    assert _data(done)["status"] == "complete"
    values = [v for v, _ in seen]
    assert values == sorted(set(values)), "strictly increasing"
    assert all(v == round(v, 1) for v in values), "rounded, no float noise"
    assert values[-1] == 100 and values.count(100) == 1
    messages = [m for _, m in seen]
    assert not any("0 ahead" in m or "one at a time" in m or "waiting its turn" in m for m in messages), messages
    uploading = [m for m in messages if m.startswith("uploading")]
    assert len(uploading) <= 51, "at most one per whole percent of the PUT"


async def test_a_failed_upload_never_reports_100(server: MCPServer, sandbox: Sandbox, data_dir: Path) -> None:
    dataset_id = _dataset(sandbox, {"review": {"type": "text"}})
    write_jsonl(data_dir / "r.jsonl", [{"review": f"r{i}"} for i in range(50)])
    sandbox.faults.add("PUT *", status=403, xml_code="AccessDenied", times=None)
    seen: list[tuple[float, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message or ""))

    async with Client(server) as client:
        failed = await call(
            client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"}, progress_callback=on_progress
        )
    assert failed.is_error
    assert all(v < 100 for v, _ in seen) and not any("finished" in m or "complete" in m for _, m in seen), seen


async def test_a_migration_reports_its_counts_and_get_dataset_shows_it(
    server: MCPServer, sandbox: Sandbox, data_dir: Path
) -> None:
    dataset_id = _dataset(sandbox, {"review": {"type": "text"}, "score": {"type": "text"}})
    write_jsonl(data_dir / "m.jsonl", [{"review": f"r{i}", "score": str(i)} for i in range(30)])
    seen: list[tuple[float, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message or ""))

    new_fields = [{"key": "review", "type": "text"}, {"key": "score", "type": "metadata"}]
    async with Client(server) as client:
        await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "m.jsonl"})
        args = {"dataset_id": dataset_id, "fields": new_fields, "strict": False, "allow_destructive": True}
        changed = await ok(client, "set_schema", args, progress_callback=on_progress)
        view = await ok(client, "get_dataset", {"dataset_id": dataset_id})
    migration = _data(changed)["migration"]
    assert migration is not None
    assert all("datapoints re-checked" in m for _, m in seen), seen
    assert seen and seen[-1][0] == 100 and f"{migration['reprocessed_count']:,} datapoints" in seen[-1][1]
    shown = _data(view)["migration"]
    assert shown["job_id"] == migration["job_id"] and shown["status"] == "complete"
    assert migration["job_id"] in _body(view) and "schema migration" in _body(view).lower()


# ----- item 8: legacy V3 --------------------------------------------------------------------------------------------


async def test_a_csv_certain_to_break_a_v3_dataset_is_refused_naming_the_row(
    server: MCPServer, sandbox: Sandbox, data_dir: Path
) -> None:
    dataset_id = _dataset(sandbox, None, legacy=True)
    (data_dir / "v3.csv").write_text("text,label\nfine,a\nbroken,b,extra\nok,c\n", encoding="utf-8")
    async with Client(server) as client:
        refused = await call(client, "upload_file", {"dataset_id": dataset_id, "path": "v3.csv"})
    assert refused.is_error
    said = text_of(refused)
    assert "row 2 (line 3) cannot be read" in said and "Row has 3 cells but the header has 2 columns" in said
    assert "ERROR" in said and "Nothing was uploaded" in said
    assert _s3_puts(sandbox) == 0


# ----- item 9: follow-ups and wording --------------------------------------------------------------------------------


async def test_follow_ups_and_wording(server: MCPServer, sandbox: Sandbox, data_dir: Path) -> None:
    schemaless = _dataset(sandbox, None)
    typed = _dataset(sandbox, {"review": {"type": "text"}, "group": {"type": "task_group_id"}})
    write_jsonl(data_dir / "g.jsonl", [{"review": f"r{i}", "group": i % 2} for i in range(6)])
    write_jsonl(data_dir / "bad.jsonl", [{"review": "a"}])
    (data_dir / "bad.jsonl").write_text('{"review": "a"}\nnot json\n{"review": "b"}\n{oops\n', encoding="utf-8")
    async with Client(server) as client:
        # An append to a dataset without a schema: refused by us, naming set_schema; nothing is sent.
        before = len(sandbox.requests)
        refused = await call(client, "append_records", {"dataset_id": schemaless, "records": [{"review": "x"}]})
        assert refused.is_error and "has no schema yet" in text_of(refused)
        assert f'set_schema(dataset_id="{schemaless}"' in text_of(refused)
        assert not any(r.method == "POST" and "datapoints" in r.path for r in list(sandbox.requests)[before:])

        # validate_file given both dataset_id and fields says which to drop.
        both = await call(
            client,
            "validate_file",
            {"path": "g.jsonl", "dataset_id": typed, "fields": [{"key": "review", "type": "text"}]},
        )
        assert both.is_error and "not both" in text_of(both) and "drop fields" in text_of(both)

        # suggest_schema reports the lines it could not read.
        suggested = await ok(client, "suggest_schema", {"path": "bad.jsonl"})
        notes = " ".join(_data(suggested)["notes"])
        assert "2 lines could not be read" in notes and "lines 2, 4" in notes
        assert "2 lines could not be read" in _body(suggested)

        # strict false → true is destructive on a dataset with data, in the dry run and in the call alike.
        await ok(client, "upload_file", {"dataset_id": typed, "path": "g.jsonl"})
        fields = [{"key": "review", "type": "text"}, {"key": "group", "type": "task_group_id"}]
        args = {"dataset_id": typed, "fields": fields, "strict": True}
        first = await ok(client, "set_schema", {**args, "dry_run": True})
        assert "needs allow_destructive=true" in _body(first)
        strict = await call(client, "set_schema", args)
        assert strict.is_error and "allow_destructive=true" in text_of(strict)

        # Moving the task_group_id field is refused in plain words.
        moved = [{"key": "review", "type": "text"}, {"key": "group", "type": "metadata"}]
        refused_move = await call(client, "set_schema", {"dataset_id": typed, "fields": moved, "strict": False})
        said = text_of(refused_move)
        assert refused_move.is_error and "keep group as the task_group_id field" in said
        assert "task_group_id task_group_id" not in said

        # A name with bidi and zero-width characters is shown cleaned, never as Python escapes.
        named = _dataset(sandbox, {"review": {"type": "text"}}, name="Re\u202eviews\u200b 2026")
        view = await ok(client, "get_dataset", {"dataset_id": named})
        assert "Reviews 2026" in _body(view) and _data(view)["name"] == "Reviews 2026"
        assert "\\u" not in _body(view)


async def test_after_an_ambiguous_create_the_advice_needs_no_id(server: MCPServer, sandbox: Sandbox) -> None:
    sandbox.faults.add(f"POST {DATASETS}", action="drop", when="after")
    async with Client(server) as client:
        with anyio.fail_after(60):
            created = await call(client, "create_dataset", {"name": "Maybe"})
    assert created.is_error
    said = text_of(created)
    assert "may have been created" in said and "id never arrived" in said and "Prolific's app" in said
    assert "get_dataset cannot" in said


async def test_an_upload_cancelled_mid_transfer_is_mentioned_by_the_next_upload(
    server: MCPServer, sandbox: Sandbox, data_dir: Path, settings: Settings
) -> None:
    dataset_id = _dataset(sandbox, {"review": {"type": "text"}})
    write_jsonl(data_dir / "c.jsonl", [{"review": f"r{i}"} for i in range(50)])
    sandbox.faults.add("PUT *", action="stall", seconds=30, times=1)
    async with Client(server) as client:
        with anyio.move_on_after(2):
            await client.call_tool("upload_file", {"dataset_id": dataset_id, "path": "c.jsonl"})
        ledger = Ledger(settings.state_dir / "sandbox" / "ledger.sqlite3")
        with anyio.fail_after(10):
            while not ledger.uploads_in_state("sandbox", "cancelled"):
                await anyio.sleep(0.05)
        (row,) = ledger.uploads_in_state("sandbox", "cancelled")
        ledger.close()
        sandbox.faults.clear()
        again = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "c.jsonl"})
    data = _data(again)
    assert data["status"] == "complete" and row.import_id in data["orphaned_imports"]
    said = _body(again)
    assert "Left behind" in said and row.import_id in said and "uninitialised" in said
