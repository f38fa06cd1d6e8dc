"""Fixtures for the MCP server: a sandbox in this process (pace fast), settings, the server, a data folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent

from prolific_mcp.sandbox import Sandbox
from prolific_mcp.server.app import build_server
from prolific_mcp.settings import Settings, load_settings

SCHEMA_MAP = {
    "review": {"type": "text", "label": "Review"},
    "photo": {"type": "image_url"},
    "source": {"type": "metadata"},
}
"""The fields in the API's shape (keyed by field)."""
SCHEMA_FIELDS = [{"key": key, **spec} for key, spec in SCHEMA_MAP.items()]
"""The same fields as the tools take them: a list of {key, type, label}."""


def records(n: int, *, bad: dict[int, dict[str, Any]] | None = None, start: int = 0) -> list[dict[str, Any]]:
    """n good records; `bad` replaces fields of some (0-based) records."""
    out: list[dict[str, Any]] = [
        {"review": f"Review number {i}", "photo": f"https://img.example.com/{i}.png", "source": f"s{i % 3}"}
        for i in range(start, start + n)
    ]
    for index, change in (bad or {}).items():
        out[index] = {k: v for k, v in {**out[index], **change}.items() if v is not None}
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox.start(state_dir=tmp_path / "sandbox", pace="fast") as sbx:
        yield sbx


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def make_settings(tmp_path: Path, data_dir: Path, **env: str) -> Settings:
    return load_settings(
        {
            "PROLIFIC_MODE": "sandbox",
            "PROLIFIC_MCP_STATE_DIR": str(tmp_path / "state"),
            "PROLIFIC_MCP_ALLOWED_DIRS": str(data_dir),
            "PROLIFIC_MCP_WAIT_SECONDS": "30",
            "HOME": str(tmp_path),
            **env,
        }
    )


@pytest.fixture
def settings(tmp_path: Path, data_dir: Path) -> Settings:
    return make_settings(tmp_path, data_dir)


@pytest.fixture
def server(settings: Settings, sandbox: Sandbox) -> MCPServer:
    return build_server(settings, sandbox_url=sandbox.url)


@pytest.fixture(params=["auto", "legacy"])
def client_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def call(client: Client, tool: str, args: dict[str, Any], **kw: Any) -> CallToolResult:
    """Call a tool, and check its structured content against the tool's output schema."""
    result = await client.call_tool(tool, args, **kw)
    if not result.is_error:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        schema = listed[tool].output_schema
        assert schema is not None, f"{tool} has no output schema"
        jsonschema.validate(result.structured_content, schema)
    return result


async def ok(client: Client, tool: str, args: dict[str, Any], **kw: Any) -> CallToolResult:
    result = await call(client, tool, args, **kw)
    assert not result.is_error, text_of(result)
    return result
