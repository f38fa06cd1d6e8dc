"""The front door of both ports: routes by local port, logs every request, applies the fault plan.

One uvicorn server listens on two loopback sockets; a request's local port (`scope["server"]`) decides
whether the API app or the fake S3 answers it, so each only answers on its own origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from typing import Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from prolific_mcp.sandbox.api import envelope
from prolific_mcp.sandbox.clock import Clock
from prolific_mcp.sandbox.faults import FaultPlan, FaultRule, RequestLog, RequestRecord, Server
from prolific_mcp.sandbox.s3 import default_s3_error, request_headers, send_bytes, xml_error

ConnKey = tuple[int, tuple[str, int]]

DISCONNECT_WAIT: Final = 2.0


class Connections:
    """Open connections by (local port, client address), so a fault can reset one."""

    def __init__(self) -> None:
        self._by_key: dict[ConnKey, asyncio.Transport] = {}

    def add(self, key: ConnKey, transport: asyncio.Transport) -> None:
        self._by_key[key] = transport

    def discard(self, key: ConnKey, transport: asyncio.Transport) -> None:
        if self._by_key.get(key) is transport:
            del self._by_key[key]

    def get(self, key: ConnKey) -> asyncio.Transport | None:
        return self._by_key.get(key)


def protocol_class(connections: Connections) -> type[H11Protocol]:
    """uvicorn's h11 protocol, registering each connection so the gateway can reset it."""

    class SandboxH11Protocol(H11Protocol):
        _key: ConnKey | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self.server and self.server[1] is not None and self.client:
                self._key = (self.server[1], self.client)
                connections.add(self._key, transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._key is not None:
                connections.discard(self._key, self.transport)
            super().connection_lost(exc)

    return SandboxH11Protocol


@dataclass(eq=False)
class Gateway:
    """The ASGI app uvicorn runs: dispatch by port, request log, faults."""

    api: ASGIApp
    s3: ASGIApp
    faults: FaultPlan
    requests: RequestLog
    clock: Clock
    connections: Connections
    api_port: int = -1
    s3_port: int = -1
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        port = scope["server"][1] if scope.get("server") else None
        server: Server = "api" if port == self.api_port else "s3"
        app = self.api if server == "api" else self.s3
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1")
        method: str = scope["method"]
        record = RequestRecord(
            server=server,
            method=method,
            path=path,
            query=scope["query_string"].decode("latin-1"),
            headers=request_headers(scope),
            at=self.clock.now(),
        )
        admin = server == "api" and scope["path"].startswith("/_sandbox/")
        if not admin:
            self.requests.append(record)

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                record.body_size += len(message.get("body", b""))
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        rule = None if admin else self.faults.take(method, path, server)
        try:
            if rule is None:
                await app(scope, counting_receive, tracking_send)
            else:
                record.fault = rule.action
                await self._apply(rule, server, app, scope, counting_receive, tracking_send, record)
        finally:
            record.finished = True

    async def _apply(
        self,
        rule: FaultRule,
        server: Server,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: RequestRecord,
    ) -> None:
        if rule.latency:
            await self._sleep(rule.latency)
        if rule.action == "pass":
            await app(scope, receive, send)
            return
        if rule.when == "after":

            async def discard(message: Message) -> None:
                return None

            await app(scope, receive, discard)
        if rule.action == "respond":
            await self._respond(rule, server, scope, send)
        elif rule.action == "redirect":
            status = rule.status or (302 if server == "api" else 307)
            assert rule.location is not None
            await send_bytes(send, status, [(b"location", rule.location.encode()), *_extra(rule)], b"")
        elif rule.action == "drop":
            if rule.after_bytes is not None:
                await self._read_until(receive, record, rule.after_bytes)
            await self._reset(scope, receive)
        else:
            await self._sleep(rule.seconds)
            await self._reset(scope, receive)

    async def _respond(self, rule: FaultRule, server: Server, scope: Scope, send: Send) -> None:
        assert rule.status is not None
        status = rule.status
        if rule.body is not None:
            content_type = rule.content_type or "text/plain; charset=utf-8"
            await send_bytes(
                send, status, [(b"content-type", content_type.encode()), *_extra(rule)], rule.body.encode()
            )
            return
        if server == "s3":
            code, message = default_s3_error(status)
            status, headers, body = xml_error(
                status, rule.xml_code or code, rule.message or message, resource=scope["path"]
            )
        else:
            detail = rule.message or f"Simulated failure from the sandbox's fault plan ({rule.match!r})."
            body = orjson.dumps(envelope(status, detail))
            headers = [(b"content-type", b"application/json")]
        await send_bytes(send, status, [*headers, *_extra(rule)], body)

    async def _read_until(self, receive: Receive, record: RequestRecord, size: int) -> None:
        while record.body_size < size:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    async def _reset(self, scope: Scope, receive: Receive) -> None:
        """Reset the connection (RST, no response) and wait until uvicorn has seen it go."""
        server, client = scope.get("server"), scope.get("client")
        transport = self.connections.get((server[1], (client[0], client[1]))) if server and client else None
        if transport is not None and not transport.is_closing():
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DISCONNECT_WAIT):
                while (await receive())["type"] != "http.disconnect":
                    pass

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the sandbox is shutting down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)


def _extra(rule: FaultRule) -> list[tuple[bytes, bytes]]:
    out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in rule.headers.items()]
    if rule.retry_after is not None:
        out.append((b"retry-after", rule.retry_after.encode("latin-1")))
    return out
