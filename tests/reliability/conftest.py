"""Fixtures for the reliability and security tests: sandboxes, servers, a transcript of everything a run produced.

The transcript is what the sentinel-token leak scan reads: every tool result (text and structured content), every
tool error, every progress message, every resource read, the captured log records and process output, and every
header the sandbox (the API and the fake S3) received.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp import StdioServerParameters
from mcp.types import CallToolResult

import prolific_mcp
from prolific_mcp.sandbox import Sandbox
from prolific_mcp.settings import Settings
from tests.server.conftest import make_settings, text_of

REPO_ROOT = Path(prolific_mcp.__file__).resolve().parents[1]
SIGNATURE_VALUE = re.compile(r"X-Amz-(?:Signature|Credential|Security-Token)(?:=|%3D)(?!REDACTED)[^&\s'\"<>]+", re.I)


def sentinel_token() -> str:
    """A fresh token that must never appear anywhere but in the Authorization header sent to the API."""
    return f"tok-SENTINEL-{secrets.token_hex(12)}"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox.start(state_dir=tmp_path / "sandbox", pace="fast") as sbx:
        yield sbx


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(tmp_path: Path, data_dir: Path) -> Settings:
    return make_settings(tmp_path, data_dir)


def stdio_params(tmp_path: Path, data_dir: Path, **env: str) -> StdioServerParameters:
    """`python -m prolific_mcp` over stdio in sandbox mode, importing this checkout."""
    environment = {
        "PROLIFIC_MODE": "sandbox",
        "PROLIFIC_MCP_STATE_DIR": str(tmp_path / "state"),
        "PROLIFIC_MCP_ALLOWED_DIRS": str(data_dir),
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
        **env,
    }
    return StdioServerParameters(
        command=sys.executable, args=["-m", "prolific_mcp"], env=environment, cwd=str(data_dir)
    )


@dataclass
class Transcript:
    """Everything a run showed to a client or sent elsewhere; `scan` fails on a secret anywhere in it."""

    texts: list[str] = field(default_factory=list)
    progress: list[tuple[float, str]] = field(default_factory=list)

    def result(self, result: CallToolResult) -> CallToolResult:
        self.texts.append(text_of(result))
        self.texts.extend(strings(result.structured_content))  # raw, as JSON would escape control characters
        self.texts.append(result.model_dump_json())
        return result

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append((progress, message or ""))
        self.texts.append(message or "")

    def add(self, *texts: str) -> None:
        self.texts.extend(texts)

    def scan(self, secrets_: list[str]) -> None:
        """Fail if any secret, or any presigned credential value not redacted, appears in anything recorded."""
        assert self.texts, "nothing was recorded: the scan would prove nothing"
        for text in self.texts:
            for secret in secrets_:
                assert secret not in text, f"a secret leaked into: {text[:300]!r}"
            match = SIGNATURE_VALUE.search(text)
            assert match is None, f"a presigned credential leaked: {match.group(0)[:80]!r}"


def strings(value: Any) -> list[str]:
    """Every string (keys included) inside a JSON-like value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def log_text(records: list[logging.LogRecord]) -> list[str]:
    """Each captured record rendered as a handler would render it (message, exception text)."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [formatter.format(r) for r in records]


async def api_dataset(sbx: Sandbox, name: str, fields: Any = None, token: str = "tok") -> str:  # noqa: S107
    """A new V4 dataset made through the API (as another of the user's tools would), bypassing the tools;
    `fields` as the API takes them ({key: {type, label}}) or as the tools take them (a list of {key, ...})."""
    from prolific_mcp.api.client import ProlificClient
    from prolific_mcp.api.models import DatasetSchema
    from tests.server.conftest import SCHEMA_FIELDS

    fields = SCHEMA_FIELDS if fields is None else fields
    if isinstance(fields, list):
        fields = {f["key"]: {k: v for k, v in f.items() if k != "key"} for f in fields}
    async with ProlificClient(sbx.url, token, sandbox=True) as api:
        schema = DatasetSchema.model_validate({"strict": False, "fields": fields})
        return (await api.create_dataset(name, sbx.workspace_id, schema)).id
