"""`prolific-datasets-mcp demo`: the main job, end to end, on a fresh local sandbox.

It starts this server over stdio (sandbox mode, its own state folder) and drives it with the MCP SDK's client,
as an agent would: suggest a schema for a bundled sample file that has a few bad records, create the dataset,
upload the file while printing progress, then print the summary and where the rejected records were written.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

SAMPLE = "reviews.jsonl"
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DemoFailed(Exception):
    """A step of the demo returned an error."""


def _text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def _say(line: str = "") -> None:
    print(line, flush=True)


async def _call(client: Client, tool: str, args: dict[str, Any], **kw: Any) -> CallToolResult:
    result = await client.call_tool(tool, args, **kw)
    if result.is_error:
        raise DemoFailed(f"{tool} failed: {_text(result)}")
    return result


async def drive(workdir: Path) -> int:
    """Run the demo against a server started over stdio with its data and state under `workdir`."""
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    sample = data_dir / SAMPLE
    with resources.as_file(resources.files("prolific_mcp.demo_data") / SAMPLE) as bundled:
        shutil.copyfile(bundled, sample)
    env = {
        "PROLIFIC_MODE": "sandbox",
        "PROLIFIC_MCP_STATE_DIR": str(workdir / "state"),
        "PROLIFIC_MCP_ALLOWED_DIRS": str(data_dir),
        "PROLIFIC_MCP_WAIT_SECONDS": "120",
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
    }
    # The child imports this very package, wherever it is installed or checked out.
    env["PYTHONPATH"] = PACKAGE_PARENT
    server = StdioServerParameters(command=sys.executable, args=["-m", "prolific_mcp"], env=env, cwd=str(data_dir))
    _say(f"Starting the MCP server over stdio on a fresh sandbox (state in {workdir / 'state'}).")
    async with Client(server) as client:
        tools = await client.list_tools()
        _say(f"Connected: {len(tools.tools)} tools ({', '.join(t.name for t in tools.tools)}).\n")

        _say(f"1. suggest_schema({SAMPLE})")
        suggestion = await _call(client, "suggest_schema", {"path": SAMPLE})
        _say(_text(suggestion) + "\n")
        fields = (suggestion.structured_content or {}).get("fields", {})

        _say("2. create_dataset(name='Product reviews (demo)', fields=<the suggestion>, strict=true)")
        created = await _call(
            client, "create_dataset", {"name": "Product reviews (demo)", "fields": fields, "strict": True}
        )
        _say(_text(created) + "\n")
        dataset_id = (created.structured_content or {})["id"]

        _say(f"3. upload_file(dataset_id={dataset_id!r}, path={SAMPLE!r}), with progress:")

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            _say(f"   [{progress:5.1f}%] {message or ''}")

        uploaded = await _call(
            client, "upload_file", {"dataset_id": dataset_id, "path": SAMPLE}, progress_callback=on_progress
        )
        _say("\n" + _text(uploaded))
        outcome = uploaded.structured_content or {}
        if outcome.get("rejected_file"):
            _say(f"\nThe rejected records are in {outcome['rejected_file']}: fix them and upload that file.")
        resource = await client.read_resource(f"prolific://datasets/{dataset_id}")
        _say("\n4. The dataset resource (prolific://datasets/…):")
        for content in resource.contents:
            _say(getattr(content, "text", ""))
    return 0


def run_demo(keep: str | None = None) -> int:
    """Run the demo in `keep` (kept afterwards) or in a temporary folder (removed afterwards)."""
    failures: list[BaseException] = []
    try:
        if keep:
            workdir = Path(keep).expanduser().resolve()
            workdir.mkdir(parents=True, exist_ok=True)
            return anyio.run(drive, workdir)
        with tempfile.TemporaryDirectory(prefix="prolific-demo-") as tmp:
            return anyio.run(drive, Path(tmp))
    except* DemoFailed as group:
        failures.extend(group.exceptions)
    for exc in failures:
        print(f"demo: {exc}", file=sys.stderr)
    return 1
