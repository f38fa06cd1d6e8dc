"""The streamable HTTP transport (DESIGN §9): loopback by default, Host/Origin checked first, then a bearer token.

SSE responses always (never `json_response=True`, which drops progress notifications).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import sys
from dataclasses import dataclass

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from prolific_mcp.redaction import register_secret
from prolific_mcp.settings import ConfigurationError, is_loopback_host

log = logging.getLogger("prolific_mcp.http")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MCP_PATH = "/mcp"


@dataclass(frozen=True, slots=True)
class HttpOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    no_auth: bool = False
    allowed_hosts: tuple[str, ...] = ()


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
    return HttpOptions(options.host, options.port, token, False, options.allowed_hosts)


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


async def serve_http(mcp: MCPServer, options: HttpOptions) -> None:
    """Serve until interrupted; a generated token is printed once, to stderr."""
    generated = options.token is None and not options.no_auth
    options = check_options(options)
    if generated:
        print(
            f"prolific-datasets-mcp: serving MCP on http://{options.host}:{options.port}{MCP_PATH}; "
            f"send 'Authorization: Bearer {options.token}'",
            file=sys.stderr,
            flush=True,
        )
    config = uvicorn.Config(
        http_app(mcp, options), host=options.host, port=options.port, log_level="warning", lifespan="on"
    )
    await uvicorn.Server(config).serve()
