"""Protocol and transport edges (matrix F9, T2, T4, T5).

F9: the server does not use client roots (docs/reliability.md says why): it never asks for them, and a client's
roots never widen what it may read.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ListRootsResult, Root

from prolific_mcp import cli
from prolific_mcp.sandbox import Sandbox
from prolific_mcp.server.app import build_server
from prolific_mcp.server.http import HttpOptions, serve_http
from prolific_mcp.settings import Settings
from tests.server.conftest import SCHEMA_FIELDS, call, ok, records, text_of, write_jsonl
from tests.server.test_transports import _serve

pytestmark = pytest.mark.anyio

TOKEN = "protocol-test-bearer-0123456789"


async def test_client_roots_are_never_asked_for_and_never_widen_access(
    tmp_path: Path, data_dir: Path, sandbox: Sandbox, settings: Settings
) -> None:
    """F9: a client that declares roots (and says they changed) is never sent roots/list; the server's allowed
    directories alone decide, so a root outside them grants nothing."""
    asked: list[Any] = []
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_jsonl(outside / "r.jsonl", records(2))
    write_jsonl(data_dir / "r.jsonl", records(2))

    async def list_roots(context: Any) -> ListRootsResult:
        asked.append(context)
        return ListRootsResult(roots=[Root(uri=outside.as_uri(), name="elsewhere")])  # type: ignore[arg-type]

    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(60), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # roots are deprecated in 2026-07-28; this client still declares them
        async with Client(server, mode="legacy", list_roots_callback=list_roots) as client:
            created = await ok(client, "create_dataset", {"name": "Roots", "fields": SCHEMA_FIELDS})
            dataset_id = (created.structured_content or {})["id"]
            await client.send_roots_list_changed()
            refused = await call(client, "upload_file", {"dataset_id": dataset_id, "path": str(outside / "r.jsonl")})
            assert refused.is_error and "outside the allowed directories" in text_of(refused)
            accepted = await ok(client, "upload_file", {"dataset_id": dataset_id, "path": "r.jsonl"})
            assert (accepted.structured_content or {})["status"] == "complete"
    assert asked == [], "the server never asks for roots"


async def test_http_binds_loopback_by_default_and_refuses_a_wildcard_bind(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """T2: the default bind is 127.0.0.1; 0.0.0.0 without auth, or without allowed hosts, never starts."""
    bound: list[tuple[str, int]] = []

    async def fake_serve(self: uvicorn.Server, sockets: Any = None) -> None:
        bound.append((self.config.host, self.config.port))

    monkeypatch.setattr(uvicorn.Server, "serve", fake_serve)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # the CLI replaces them; give them back afterwards
    await serve_http(build_server(settings), HttpOptions(token=TOKEN))
    assert bound == [("127.0.0.1", 8765)]
    monkeypatch.setenv("PROLIFIC_MODE", "sandbox")
    for args in (["--http", "--host", "0.0.0.0", "--no-auth"], ["--http", "--host", "0.0.0.0"]):  # noqa: S104
        assert await anyio.to_thread.run_sync(cli.main, args) == 2
    err = capsys.readouterr().err
    assert "--no-auth is only allowed on a loopback bind" in err and "--allowed-host" in err
    assert bound == [("127.0.0.1", 8765)], "nothing else was bound"


async def test_sessions_are_not_credentials_and_bodies_are_checked(settings: Settings, sandbox: Sandbox) -> None:
    """T4: a session id is no key: without the bearer token it gets 401, and an unknown id 404. T5: a body over
    4 MiB gets 413, a wrong Content-Type 415, malformed JSON 400; none of them reaches a tool."""
    server = build_server(settings, sandbox_url=sandbox.url)
    with anyio.fail_after(60):
        async with _serve(server, HttpOptions(token=TOKEN)) as url:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
            session_ids: list[str] = []

            async def remember(response: httpx2.Response) -> None:
                if "mcp-session-id" in response.headers:
                    session_ids.append(response.headers["mcp-session-id"])

            async with (
                httpx2.AsyncClient(headers=auth, timeout=30, event_hooks={"response": [remember]}) as http,
                Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
            ):
                await client.list_tools()
                assert session_ids, "a legacy session has an id"
                session = session_ids[0]
                assert len(session) >= 32
                ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
                async with httpx2.AsyncClient(timeout=30) as raw:
                    stolen = await raw.post(url, json=ping, headers={**base, "Mcp-Session-Id": session})
                    assert stolen.status_code == 401, "a session id without the token is refused"
                    other = await raw.post(
                        url, json=ping, headers={**base, "Mcp-Session-Id": session, "Authorization": "Bearer x" * 3}
                    )
                    assert other.status_code == 401
                    unknown = await raw.post(url, json=ping, headers={**base, **auth, "Mcp-Session-Id": "0" * 32})
                    assert unknown.status_code == 404
                    big = b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "' + b"a" * (5 * 2**20)
                    too_big = await raw.post(url, content=big + b'"}}', headers={**base, **auth})
                    assert too_big.status_code == 413
                    plain = await raw.post(url, content=b"ping", headers={**base, **auth, "Content-Type": "text/plain"})
                    assert plain.status_code in (400, 415)
                    broken = await raw.post(url, content=b'{"jsonrpc": ', headers={**base, **auth})
                    assert broken.status_code == 400
                still = await client.call_tool("list_workspaces", {})
                assert not still.is_error, "the session is unharmed"
    assert [r for r in sandbox.requests if r.method != "GET"] == []
