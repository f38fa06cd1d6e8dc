"""Secrets (matrix K1–K4, A5, S1, S9): a sentinel token and the presigned credentials never appear anywhere a run
produced, under success and under faults.

The server runs in Prolific mode with the sentinel as PROLIFIC_TOKEN, against a sandbox that accepts only that
token; httpx and httpcore log at DEBUG. Everything is recorded (tool results, errors, progress messages, resources,
log records, process output, the headers the fake S3 and the API received) and then scanned.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from prolific_mcp.sandbox import Sandbox
from prolific_mcp.server.app import build_server
from prolific_mcp.server.http import HttpOptions
from prolific_mcp.settings import load_settings
from tests.reliability.conftest import Transcript, log_text, sentinel_token
from tests.server.conftest import SCHEMA_FIELDS, records, text_of, write_jsonl
from tests.server.test_transports import _serve

pytestmark = pytest.mark.anyio


@contextmanager
def elsewhere() -> Iterator[tuple[str, socket.socket]]:
    """A loopback port nothing should ever connect to: connections would wait in its backlog, unaccepted."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", sock
    finally:
        sock.close()


def assert_never_contacted(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        sock.accept()


def prolific_settings(tmp_path: Path, data_dir: Path, token: str, url: str, workspace_id: str) -> Any:
    """Prolific mode (the real token path) against a loopback API: the sandbox stands in for Prolific (it has two
    workspaces, as an account may, so the default one is named)."""
    return load_settings(
        {
            "PROLIFIC_MODE": "prolific",
            "PROLIFIC_WORKSPACE_ID": workspace_id,
            "PROLIFIC_TOKEN": token,
            "PROLIFIC_URL": url,
            "PROLIFIC_MCP_STATE_DIR": str(tmp_path / "state"),
            "PROLIFIC_MCP_ALLOWED_DIRS": str(data_dir),
            "PROLIFIC_MCP_WAIT_SECONDS": "30",
            "HOME": str(tmp_path),
        }
    )


def credential_values(sandbox: Sandbox) -> list[str]:
    """The signatures and credentials of every presigned URL the fake S3 was called with."""
    values: set[str] = set()
    for record in sandbox.requests.for_server("s3"):
        params = record.params
        values.update(v for k, v in params.items() if k in ("X-Amz-Signature", "X-Amz-Credential") and v)
    return sorted(values)


async def test_the_sentinel_token_and_signatures_never_leak(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """K1, K2, K4, A5, S1, S9 and the leak scan: every tool, on success and under faults."""
    token = sentinel_token()
    transcript = Transcript()
    with (
        Sandbox.start(state_dir=tmp_path / "sandbox", pace="fast", token=token) as sbx,
        elsewhere() as (other_url, other),
    ):
        server = build_server(prolific_settings(tmp_path, data_dir, token, sbx.url, sbx.workspace_id))
        caplog.set_level(logging.DEBUG)
        for name in ("httpx2", "httpcore2"):
            logging.getLogger(name).setLevel(logging.DEBUG)  # httpx logs full URLs at INFO: it must be redacted

        def data(name: str, n: int, **bad: Any) -> str:
            write_jsonl(data_dir / name, records(n, bad=bad or None, start=hash(name) % 1000))
            return name

        async def run(tool: str, args: dict[str, Any], *, error: bool | None = False) -> str:
            result = transcript.result(await client.call_tool(tool, args, progress_callback=transcript.on_progress))
            if error is not None:
                assert result.is_error == error, (tool, args, text_of(result))
            return text_of(result)

        with anyio.fail_after(120):
            async with Client(server) as client:
                # every tool, on success
                await run("list_workspaces", {})
                await run("suggest_schema", {"path": data("s.jsonl", 3)})
                created = transcript.result(
                    await client.call_tool("create_dataset", {"name": "Leak scan", "fields": SCHEMA_FIELDS})
                )
                dataset_id = (created.structured_content or {})["id"]
                await run("set_schema", {"dataset_id": dataset_id, "fields": SCHEMA_FIELDS, "strict": True})
                await run("validate_file", {"path": data("v.jsonl", 3), "dataset_id": dataset_id})
                partial = await run("upload_file", {"dataset_id": dataset_id, "path": data("p.jsonl", 4)})
                assert "accepted" in partial
                await run("append_records", {"dataset_id": dataset_id, "records": records(2, start=5000)})
                await run("get_dataset", {"dataset_id": dataset_id})
                await run("list_datasets", {})
                for uri in (
                    "prolific://datasets",
                    "prolific://workspaces",
                    f"prolific://datasets/{dataset_id}",
                    f"prolific://datasets/{dataset_id}/schema",
                ):
                    transcript.add((await client.read_resource(uri)).model_dump_json())

                # S1: a signature mismatch is final, explained, and its XML (which echoes the signature) stays out
                sbx.faults.add("PUT *", status=403, xml_code="SignatureDoesNotMatch", times=1)
                text = await run("upload_file", {"dataset_id": dataset_id, "path": data("s1.jsonl", 2)}, error=True)
                assert "Content-Type" in text
                # S3/S4: SlowDown twice, then a reset mid-body, then success; all from byte 0
                sbx.faults.add("PUT *", status=503, xml_code="SlowDown", times=2)
                sbx.faults.add("PUT *", action="drop", after_bytes=200, times=1)
                await run("upload_file", {"dataset_id": dataset_id, "path": data("s3.jsonl", 30)})
                # S9: a redirect from S3 (to a URL carrying a signature) is not followed
                sbx.faults.add("PUT *", action="redirect", location=f"{other_url}/x?X-Amz-Signature=abc123def456")
                text = await run("upload_file", {"dataset_id": dataset_id, "path": data("s9.jsonl", 2)}, error=True)
                assert "redirect" in text
                # K4: an API redirect to another host is not followed (the token would go with it)
                sbx.faults.add("GET /api/v1/data-collection/datasets/*", action="redirect", location=f"{other_url}/")
                await run("get_dataset", {"dataset_id": dataset_id}, error=True)
                # an error body that echoes the token back (a proxy page, say)
                sbx.faults.add(
                    "GET /api/v1/data-collection/datasets/*",
                    status=400,
                    body=json.dumps({"detail": f"bad header Authorization: Token {token}", "traceback": token}),
                    content_type="application/json",
                )
                await run("get_dataset", {"dataset_id": dataset_id}, error=True)
                # A5: 401 and 403 explained, not retried
                for status in (401, 403):
                    before = len(sbx.requests)
                    sbx.faults.add("GET /api/v1/data-collection/datasets/*", status=status)
                    text = await run("get_dataset", {"dataset_id": dataset_id}, error=True)
                    assert "PROLIFIC_TOKEN" in text or "token" in text.lower()
                    assert len(sbx.requests) == before + 1, "a refused token is not retried"
                # A1: rate-limited far beyond the call's deadline: an actionable answer at once
                sbx.faults.add("GET /api/v1/data-collection/datasets/*", status=429, retry_after=3600)
                text = await run("get_dataset", {"dataset_id": dataset_id}, error=True)
                assert "retry after" in text.lower() or "rate" in text.lower()
                assert not sbx.faults.unused(), [r.match for r in sbx.faults.unused()]
        assert_never_contacted(other)

    # the headers that left: the token went to the API only, nothing of ours went to S3
    api_requests = sbx.requests.for_server("api")
    s3_requests = sbx.requests.for_server("s3")
    assert api_requests and s3_requests
    assert {r.headers.get("authorization") for r in api_requests} == {f"Token {token}"}
    for record in s3_requests:
        assert "authorization" not in record.headers and "cookie" not in record.headers
        assert "prolific" not in record.headers.get("user-agent", "")
        transcript.add(json.dumps(record.headers))

    ours = [r for r in caplog.records if not r.name.startswith("prolific_mcp.sandbox")]
    assert any(r.name.startswith("httpx2") for r in ours), "httpx logging must have been on for the scan to count"
    transcript.add(*log_text(ours))
    out, err = capfd.readouterr()
    transcript.add(out, err)
    assert transcript.progress, "progress messages are part of the scan"
    transcript.scan([token, *credential_values(sbx)])


async def test_client_credentials_are_never_passed_on(tmp_path: Path, data_dir: Path) -> None:
    """K3: over HTTP, the MCP bearer token and any token a client sends stay with this server; Prolific (the
    sandbox) sees only the configured token, and no tool takes a token as an argument."""
    token = sentinel_token()
    mcp_token = "mcp-bearer-" + sentinel_token()
    with Sandbox.start(state_dir=tmp_path / "sandbox", pace="fast", token=token) as sbx:
        server = build_server(prolific_settings(tmp_path, data_dir, token, sbx.url, sbx.workspace_id))
        with anyio.fail_after(60):
            async with _serve(server, HttpOptions(token=mcp_token)) as url:
                forged = {"Authorization": f"Token {sentinel_token()}"}
                async with httpx2.AsyncClient(timeout=10) as http:
                    refused = await http.post(
                        url,
                        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                        headers={**forged, "Content-Type": "application/json", "Accept": "application/json"},
                    )
                assert refused.status_code == 401
                headers = {"Authorization": f"Bearer {mcp_token}", "X-Prolific-Token": "tok-from-the-client"}
                async with (
                    httpx2.AsyncClient(headers=headers, timeout=60) as http,
                    Client(streamable_http_client(url, http_client=http)) as client,
                ):
                    tools = (await client.list_tools()).tools
                    for tool in tools:
                        names = " ".join(tool.input_schema.get("properties", {})).lower()
                        assert "token" not in names and "auth" not in names and "key" not in names, tool.name
                    result = await client.call_tool("list_workspaces", {})
                    assert not result.is_error, text_of(result)
                    write_jsonl(data_dir / "r.jsonl", records(2))
                    created = await client.call_tool("create_dataset", {"name": "K3", "fields": SCHEMA_FIELDS})
                    dataset_id = (created.structured_content or {})["id"]
                    uploaded = await client.call_tool("upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
                    assert not uploaded.is_error, text_of(uploaded)
    sent = list(sbx.requests)
    assert sent
    assert {r.headers.get("authorization") for r in sent if r.server == "api"} == {f"Token {token}"}
    everything = json.dumps([r.to_dict() for r in sent])
    assert mcp_token not in everything and "tok-from-the-client" not in everything
