"""The streamable HTTP transport: loopback by default, Host/Origin checked first, then a bearer token.

SSE responses always (never `json_response=True`, which drops progress notifications). Slow clients cannot hold
the server: a connection that has not sent a whole request head within `header_timeout` seconds (when it opens, or
between requests) is closed, and at most `max_connections` connections are served at once (uvicorn's
`limit_concurrency`: more get 503). See docs/architecture.md (Transports).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import sys
from dataclasses import dataclass, replace

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from prolific_mcp.redaction import register_secret
from prolific_mcp.settings import ConfigurationError, is_loopback_host

log = logging.getLogger("prolific_mcp.http")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MCP_PATH = "/mcp"


HEADER_TIMEOUT = 10.0
"""Seconds a connection may take to send a whole request head."""
MAX_CONNECTIONS = 100
"""Connections (and requests in progress) served at once; more are answered 503 at once."""


@dataclass(frozen=True, slots=True)
class HttpOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    no_auth: bool = False
    allowed_hosts: tuple[str, ...] = ()
    header_timeout: float = HEADER_TIMEOUT
    max_connections: int = MAX_CONNECTIONS


def security_for(options: HttpOptions) -> TransportSecuritySettings:
    """Allowed Host and Origin values: loopback ones for a loopback bind, else exactly the configured hosts."""
    if is_loopback_host(options.host):
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", *options.allowed_hosts]
    else:
        hosts = list(options.allowed_hosts)
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def check_options(options: HttpOptions) -> HttpOptions:
    """Refuse unsafe combinations before binding anything; generate the bearer token when none is set."""
    loopback = is_loopback_host(options.host)
    if options.no_auth and not loopback:
        raise ConfigurationError(
            f"--no-auth is only allowed on a loopback bind, not {options.host}: drop --no-auth, or bind 127.0.0.1"
        )
    if not loopback and not options.allowed_hosts:
        raise ConfigurationError(
            f"binding {options.host} exposes the server beyond this machine: add --allowed-host NAME:PORT for each "
            "host name clients use (and keep the bearer token), or bind 127.0.0.1"
        )
    if options.no_auth:
        return options
    token = options.token or secrets.token_urlsafe(32)
    register_secret(token)
    return replace(options, token=token)


class GuardMiddleware:
    """Host and Origin first (421/403), then `Authorization: Bearer <token>` compared in constant time (401)."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings, token: str | None) -> None:
        self.app = app
        self.checker = TransportSecurityMiddleware(security)
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refused: Response | None = await self.checker.validate_request(request, is_post=False)
        if refused is None and self.token is not None:
            header = request.headers.get("authorization", "")
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token):
                refused = JSONResponse(
                    {"error": "unauthorized", "detail": "send Authorization: Bearer <PROLIFIC_MCP_HTTP_TOKEN>"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)


def http_app(mcp: MCPServer, options: HttpOptions) -> ASGIApp:
    """The guarded streamable HTTP app (its lifespan runs the MCP session manager)."""
    security = security_for(options)
    app = mcp.streamable_http_app(streamable_http_path=MCP_PATH, transport_security=security, host=options.host)
    return GuardMiddleware(app, security, options.token)


async def serve_http(mcp: MCPServer, options: HttpOptions, stop: anyio.Event | None = None) -> None:
    """Serve until interrupted, or until `stop` is set (then uvicorn shuts down gracefully: connections get 1 s, the
    lifespan closes the services); a generated token is printed once, to stderr."""
    generated = options.token is None and not options.no_auth
    options = check_options(options)
    if generated:
        print(
            f"prolific-datasets-mcp: serving MCP on http://{options.host}:{options.port}{MCP_PATH}; "
            f"send 'Authorization: Bearer {options.token}'",
            file=sys.stderr,
            flush=True,
        )
    server = uvicorn.Server(server_config(mcp, options))
    if stop is None:
        await server.serve()
        return
    async with anyio.create_task_group() as tg:

        async def exit_on_stop() -> None:
            await stop.wait()
            server.should_exit = True

        tg.start_soon(exit_on_stop)
        await server.serve()
        tg.cancel_scope.cancel()


def server_config(mcp: MCPServer, options: HttpOptions) -> uvicorn.Config:
    """uvicorn's configuration for the guarded app, with the header timeout and the connection limit."""
    return uvicorn.Config(
        http_app(mcp, options),
        host=options.host,
        port=options.port,
        log_level="warning",
        log_config=None,  # our logging (prolific_mcp.logs), not uvicorn's
        lifespan="on",
        http=header_timeout_protocol(options.header_timeout),
        limit_concurrency=options.max_connections,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=1,
    )


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request head has not arrived within `seconds` of it
    opening or of its previous response (uvicorn times out idle keep-alive connections, not slow heads; written
    against uvicorn 0.54's H11Protocol: `cycle` is set once a request head is complete)."""

    class HeaderTimeoutProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _waiting_after: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._deadline is not None and self.cycle is not self._waiting_after:
                self._disarm()  # a request head arrived

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._waiting_after = self.cycle
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self.cycle is self._waiting_after and not self.transport.is_closing():
                log.info("closing a connection that sent no complete request head within %g s", seconds)
                self.transport.close()

    return HeaderTimeoutProtocol
