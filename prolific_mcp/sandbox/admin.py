"""The sandbox's own admin routes under `/_sandbox/`: info, the fault plan, the request log, the clock, seeding.

They answer loopback clients only, with `Authorization: Bearer <admin token>`; they are how tests and the CLI steer
the sandbox, and no part of what Prolific serves. The seeding functions here are also what `harness.Sandbox` uses.
"""

from __future__ import annotations

import hmac
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from prolific_mcp.sandbox.api import ApiError, Context, Handler, endpoint_of, json_object, json_response
from prolific_mcp.sandbox.clock import iso
from prolific_mcp.sandbox.faults import FaultPlanError
from prolific_mcp.sandbox.store import Db
from prolific_mcp.sandbox.views import batch_view, workspace_view

LOOPBACK_HOSTS: Final = ("127.0.0.1", "::1", "localhost")


def seed_batch(db: Db, workspace_id: str, dataset_id: str | None, name: str, status: str) -> dict[str, Any]:
    """Create a batch (the public API we emulate has no batch creation); returns it as the API shows it."""
    batch = db.create_batch(workspace_id, dataset_id, name, status)
    return batch_view(batch, db.datasets_by_id([dataset_id] if dataset_id else []))


def seed_workspace(db: Db, title: str, description: str, typed: bool = True) -> dict[str, Any]:
    """Create another workspace (with typed datasets unless `typed=False`); returns it as the API shows it."""
    return workspace_view(db.create_workspace(title, description, typed=typed), db.user())


def check_admin(request: Request, ctx: Context) -> None:
    client = request.client
    if client is None or client.host not in LOOPBACK_HOSTS:
        raise ApiError(403, "the sandbox admin routes answer loopback clients only")
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), ctx.config.admin_token.encode()):
        raise ApiError(
            401,
            "the sandbox admin routes need 'Authorization: Bearer <admin token>' (the token printed in the ready "
            "line, or given with --admin-token)",
        )


async def admin_info(request: Request, ctx: Context) -> Response:
    legacy_workspace_id = await ctx.store.run(Db.legacy_workspace_id)
    return json_response(
        {
            "url": ctx.api_url,
            "s3_url": ctx.s3_url,
            "state_dir": str(ctx.config.state_dir),
            "workspace_id": ctx.workspace_id,
            "legacy_workspace_id": legacy_workspace_id,
            "user_id": ctx.user_id,
            "pace": ctx.config.pace.name,
            "store_only": ctx.config.store_only,
            "held_back_imports": ctx.scheduler.held_back,
            "clock_offset": ctx.clock.offset,
        }
    )


async def admin_faults(request: Request, ctx: Context) -> Response:
    if request.method == "DELETE":
        return json_response({"cleared": ctx.faults.clear()})
    if request.method in ("POST", "PUT"):
        body = await json_object(request)
        try:
            added = ctx.faults.load(body, replace=request.method == "PUT")
        except FaultPlanError as exc:
            raise ApiError(400, str(exc)) from None
        return json_response({"added": [r.to_dict() for r in added]}, 201 if request.method == "POST" else 200)
    return json_response(
        {"faults": [r.to_dict() for r in ctx.faults.rules()], "unused": [r.to_dict() for r in ctx.faults.unused()]}
    )


async def admin_requests(request: Request, ctx: Context) -> Response:
    if request.method == "DELETE":
        count = len(ctx.requests)
        ctx.requests.clear()
        return json_response({"cleared": count})
    return json_response({"requests": [r.to_dict() for r in list(ctx.requests)]})


async def admin_clock(request: Request, ctx: Context) -> Response:
    if request.method == "POST":
        body = await json_object(request)
        seconds = body.get("advance")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ApiError(400, {"advance": ["The number of seconds to move the clock forward is required."]})
        ctx.clock.advance(float(seconds))
    now = ctx.clock.now()
    return json_response({"now": iso(now), "offset": ctx.clock.offset})


async def admin_batches(request: Request, ctx: Context) -> Response:
    body = await json_object(request)
    workspace_id = body.get("workspace_id") or ctx.workspace_id
    dataset_id = body.get("dataset_id")
    name = body.get("name") or "Sandbox batch"
    status = body.get("status") or "UNINITIALISED"
    if not all(isinstance(v, str) for v in (workspace_id, name, status)) or not (
        dataset_id is None or isinstance(dataset_id, str)
    ):
        raise ApiError(400, "workspace_id, dataset_id, name and status must be strings.")

    return json_response(await ctx.store.run(seed_batch, workspace_id, dataset_id, name, status), 201)


async def admin_workspaces(request: Request, ctx: Context) -> Response:
    body = await json_object(request)
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ApiError(400, {"title": ["This field is required."]})
    description = body.get("description") or ""
    typed = body.get("typed", True)
    if not isinstance(typed, bool):
        raise ApiError(400, {"typed": ["true (typed V4 datasets, the default) or false (V3 datasets only)."]})
    return json_response(await ctx.store.run(seed_workspace, title.strip(), str(description), typed), 201)


def admin_routes(ctx: Context) -> list[Route]:
    """The `/_sandbox/` routes, served on the API port beside the emulated API."""

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, endpoint_of(ctx, handler, check_admin), methods=methods)

    return [
        route("/_sandbox/info", admin_info, ["GET"]),
        route("/_sandbox/faults", admin_faults, ["GET", "POST", "PUT", "DELETE"]),
        route("/_sandbox/requests", admin_requests, ["GET", "DELETE"]),
        route("/_sandbox/clock", admin_clock, ["GET", "POST"]),
        route("/_sandbox/batches", admin_batches, ["POST"]),
        route("/_sandbox/workspaces", admin_workspaces, ["POST"]),
    ]
