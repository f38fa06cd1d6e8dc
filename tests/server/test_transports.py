"""The same flow over a real stdio subprocess and over streamable HTTP on loopback; the HTTP guard."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer

import prolific_mcp
from prolific_mcp.server.http import HttpOptions, check_options, server_config
from prolific_mcp.settings import ConfigurationError
from tests.server.conftest import SCHEMA_FIELDS, ok, records, text_of, write_jsonl

pytestmark = pytest.mark.anyio

TOKEN = "test-http-token-0123456789"


async def _flow(client: Client, data_dir: Path) -> None:
    """create (no fields) → set_schema → upload → summary → dataset resource."""
    write_jsonl(data_dir / "reviews.jsonl", records(6, bad={2: {"photo": "ftp://nope"}}))
    created = await ok(client, "create_dataset", {"name": "Over the wire"})
    dataset_id = (created.structured_content or {})["id"]
    await ok(client, "set_schema", {"dataset_id": dataset_id, "fields": SCHEMA_FIELDS, "strict": True})
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    uploaded = await ok(
        client,
        "upload_file",
        {"dataset_id": dataset_id, "path": "reviews.jsonl", "wait_seconds": 60},
        progress_callback=on_progress,
    )
    data = uploaded.structured_content or {}
    assert (data["status"], data["accepted_count"], data["rejected_count"]) == ("partial", 5, 1)
    assert "record 3" in text_of(uploaded)
    assert messages, "progress notifications arrive"
    view = await client.read_resource(f"prolific://datasets/{dataset_id}")
    assert "Datapoints: 5" in view.contents[0].text  # type: ignore[union-attr]


def _stdio(tmp_path: Path, data_dir: Path) -> StdioServerParameters:
    env = {
        "PROLIFIC_MCP_STATE_DIR": str(tmp_path / "state"),
        "PROLIFIC_MCP_ALLOWED_DIRS": str(data_dir),
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
    }
    env["PYTHONPATH"] = str(Path(prolific_mcp.__file__).resolve().parents[1])
    return StdioServerParameters(command=sys.executable, args=["-m", "prolific_mcp"], env=env, cwd=str(data_dir))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stdio_subprocess_on_its_own_sandbox(tmp_path: Path, data_dir: Path, mode: str) -> None:
    with anyio.fail_after(120):
        async with Client(_stdio(tmp_path, data_dir), mode=mode) as client:
            tools = await client.list_tools()
            assert "upload_file" in {t.name for t in tools.tools}
            await _flow(client, data_dir)


@asynccontextmanager
async def _serve(server: MCPServer, options: HttpOptions) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(server_config(server, options))
    async with anyio.create_task_group() as tg:
        tg.start_soon(uv.serve, [sock])
        with anyio.fail_after(20):
            while not uv.started:
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            uv.should_exit = True


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_streamable_http_with_the_bearer_token(server: MCPServer, data_dir: Path, mode: str) -> None:
    options = HttpOptions(token=TOKEN)
    async with _serve(server, options) as url:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode) as client,
        ):
            await _flow(client, data_dir)


async def test_http_checks_host_and_origin_before_the_token(server: MCPServer) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with _serve(server, HttpOptions(token=TOKEN)) as url, httpx2.AsyncClient(timeout=10) as http:
        base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        no_token = await http.post(url, json=body, headers=base)
        assert no_token.status_code == 401
        wrong = await http.post(url, json=body, headers={**base, "Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        forged_host = await http.post(url, json=body, headers={**base, "Host": "evil.example"})
        assert forged_host.status_code == 421
        forged_origin = await http.post(url, json=body, headers={**base, "Origin": "http://evil.example"})
        assert forged_origin.status_code == 403
        assert TOKEN not in no_token.text


def test_unsafe_http_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="--no-auth"):
        check_options(HttpOptions(host="0.0.0.0", no_auth=True))  # noqa: S104
    with pytest.raises(ConfigurationError, match="--allowed-host"):
        check_options(HttpOptions(host="0.0.0.0", token=TOKEN))  # noqa: S104
    generated = check_options(HttpOptions())
    assert generated.token
    assert len(generated.token) >= 32
    assert check_options(HttpOptions(no_auth=True)).token is None


TRICKLERS = 30


async def _trickle(port: int, closed: list[int], index: int) -> None:
    """An unauthenticated client that sends a request head one header line at a time and never finishes it; it
    notes when the server closes the connection."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        try:
            await stream.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while True:
                with anyio.move_on_after(0.3):
                    if not await stream.receive():
                        break
                await stream.send(b"X-Slow: still-here\r\n")
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            pass
    closed.append(index)


async def test_slow_request_heads_are_cut_and_cannot_block_a_client(server: MCPServer) -> None:
    """30 connections trickling headers, with room for only 20: they are closed after the header timeout, and a real
    client (which is answered 503 while the slots are taken) gets through within a generous bound."""
    options = HttpOptions(token=TOKEN, header_timeout=1.0, max_connections=20)
    closed: list[int] = []
    async with _serve(server, options) as url, anyio.create_task_group() as tg:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        for index in range(TRICKLERS):
            tg.start_soon(_trickle, port, closed, index)
        await anyio.sleep(0.2)  # let them connect first
        with anyio.fail_after(20):  # what "blocked" means here: no answer within 20 s
            statuses = []
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5) as http:
                while True:
                    response = await http.post(
                        url,
                        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                        headers={"Accept": "application/json, text/event-stream"},
                    )
                    statuses.append(response.status_code)
                    if response.status_code != 503:
                        break
                    await anyio.sleep(0.2)
            assert response.status_code < 500, statuses
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                assert "upload_file" in {t.name for t in (await client.list_tools()).tools}
            while len(closed) < TRICKLERS:  # every trickler was cut off by the server
                await anyio.sleep(0.1)
