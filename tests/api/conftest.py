"""Shared helpers for the API client tests: an injected clock, a raw loopback HTTP server, leak checks."""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import pytest

SENTINEL = "tok-SENTINEL-1234567890"
SIGNATURE = "deadbeefcafef00d0123456789abcdef"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """A clock that only moves when the fake sleep is awaited; records every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- leak checks -------------------------------------------------------------------------------------------------

_SIGNATURE_VALUE = re.compile(r"X-Amz-Signature=(?!REDACTED)[^&\s'\"]+", re.IGNORECASE)


def exception_texts(exc: BaseException) -> Iterator[str]:
    """str and repr of `exc` and of every exception chained to it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        current = current.__cause__ or current.__context__


def assert_no_leak(*texts: str) -> None:
    for text in texts:
        assert SENTINEL not in text
        assert SIGNATURE not in text
        assert not _SIGNATURE_VALUE.search(text), text


def assert_exception_clean(exc: BaseException) -> None:
    assert_no_leak(*exception_texts(exc))


# --- a raw loopback HTTP/1.1 server -------------------------------------------------------------------------------


@dataclass
class Conn:
    """One accepted connection: the request head and the body bytes the server read."""

    head: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    disconnected: anyio.Event = field(default_factory=anyio.Event)

    @property
    def method(self) -> str:
        return self.head.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return self.head.split(" ")[1] if " " in self.head else ""


Handler = Callable[[anyio.abc.SocketStream, Conn], Awaitable[None]]


class RawServer:
    """Each connection is served by the next scripted handler (the last one repeats)."""

    def __init__(self, handlers: tuple[Handler, ...], port: int) -> None:
        self._handlers = handlers
        self.port = port
        self.connections: list[Conn] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        conn = Conn()
        index = len(self.connections)
        self.connections.append(conn)
        handler = self._handlers[min(index, len(self._handlers) - 1)]
        try:
            await handler(stream, conn)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            conn.disconnected.set()
            with anyio.CancelScope(shield=True):
                await stream.aclose()


@asynccontextmanager
async def serve(*handlers: Handler, rcvbuf: int | None = None) -> AsyncIterator[RawServer]:
    """Run a RawServer on 127.0.0.1 with an ephemeral port for the duration of the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    listener = await anyio.abc.SocketListener.from_socket(sock)
    server = RawServer(handlers, sock.getsockname()[1])
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, server.handle)
            try:
                yield server
            finally:
                tg.cancel_scope.cancel()
    finally:
        await listener.aclose()


async def read_head(stream: anyio.abc.SocketStream, conn: Conn) -> bytes:
    """Read the request head into `conn`; return the body bytes already received."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    conn.head = lines[0]
    conn.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return rest


async def read_request(stream: anyio.abc.SocketStream, conn: Conn) -> None:
    """Read a whole request (head and a Content-Length body)."""
    conn.body = await read_head(stream, conn)
    size = int(conn.headers.get("content-length", "0"))
    while len(conn.body) < size:
        conn.body += await stream.receive()


def response_bytes(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    all_headers = {"Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
    return head.encode("latin-1") + body


def respond(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    """A handler that reads the request and answers."""

    async def handler(stream: anyio.abc.SocketStream, conn: Conn) -> None:
        await read_request(stream, conn)
        await stream.send(response_bytes(status, body, headers))

    return handler


def respond_json(status: int, payload: bytes, headers: dict[str, str] | None = None) -> Handler:
    return respond(status, payload, {"Content-Type": "application/json", **(headers or {})})


def s3_xml(code: str, message: str, **extra: str) -> bytes:
    parts = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        f"{parts}<RequestId>R1</RequestId></Error>"
    ).encode()


def respond_s3(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: str) -> Handler:
    return respond(status, s3_xml(code, message, **extra), {"Content-Type": "application/xml", **(headers or {})})


def _abort(stream: anyio.abc.SocketStream) -> None:
    """Close with RST (SO_LINGER 0), as a peer that crashed would."""
    raw: socket.socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610 (anyio, not Django)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def reset_after(body_bytes: int) -> Handler:
    """Read the head and `body_bytes` of the body, then reset the connection."""

    async def handler(stream: anyio.abc.SocketStream, conn: Conn) -> None:
        conn.body = await read_head(stream, conn)
        while len(conn.body) < body_bytes:
            conn.body += await stream.receive()
        _abort(stream)

    return handler


def drop() -> Handler:
    """Read the whole request, then close without answering."""

    async def handler(stream: anyio.abc.SocketStream, conn: Conn) -> None:
        await read_request(stream, conn)

    return handler


def stall() -> Handler:
    """Read the head, then stop reading and never answer (until the peer goes away or the test ends)."""

    async def handler(stream: anyio.abc.SocketStream, conn: Conn) -> None:
        conn.body = await read_head(stream, conn)
        await anyio.sleep_forever()

    return handler


def stall_after_request() -> Handler:
    """Read the whole request, then never answer; notice when the client goes away."""

    async def handler(stream: anyio.abc.SocketStream, conn: Conn) -> None:
        await read_request(stream, conn)
        while True:
            if not await stream.receive():
                return

    return handler
