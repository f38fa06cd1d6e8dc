"""The emulated Prolific API (Starlette): datasets, imports, migrations, append, workspaces, users, batches.

Paths, methods, status codes and the error envelope follow Prolific's documentation (docs/prolific-api.md); where it
is silent, docs/sandbox.md lists the sandbox's own choices. The `/_sandbox/` admin routes are in `admin.py`.
"""

from __future__ import annotations

import hmac
import math
import os
import unicodedata
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlencode

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from prolific_mcp.records import CONTENT_TYPES, Schema, schema_problems
from prolific_mcp.sandbox.clock import Clock, iso
from prolific_mcp.sandbox.config import MAX_APPEND_BYTES, SandboxConfig
from prolific_mcp.sandbox.faults import FaultPlan, RequestLog
from prolific_mcp.sandbox.importer import AppendError, append_records
from prolific_mcp.sandbox.jobs import Scheduler
from prolific_mcp.sandbox.rows import DatasetRow, JobError, StoredUpload
from prolific_mcp.sandbox.s3 import Signer
from prolific_mcp.sandbox.store import Db, Store
from prolific_mcp.sandbox.views import (
    batch_view,
    dataset_view,
    import_view,
    migration_view,
    user_view,
    workspace_view,
)

DATASETS: Final = "/api/v1/data-collection/datasets"
MAX_NAME_LENGTH: Final = 255
MAX_FILENAME_LENGTH: Final = 255
V4_EXTENSIONS: Final = (".csv", ".jsonl")
V3_EXTENSIONS: Final = (".csv", ".zip")
ERROR_CODES: Final = {
    400: 140000,
    401: 140100,
    403: 140300,
    404: 140400,
    405: 140500,
    409: 140900,
    413: 141300,
    415: 141500,
    422: 142200,
    429: 142900,
}

UNTYPED_WORKSPACE_DETAIL: Final = (
    "Schemas are only accepted for workspaces where the typed-dataset feature is enabled, and this workspace does "
    "not have it. Omit schema to create a (V3) dataset here."
)
"""The sandbox's answer (400, on `schema`) to a schema sent for a workspace without typed datasets; Prolific's exact
wording is not public, this follows its CLI's help text (docs/prolific-api.md, Where the docs are silent)."""

Detail = str | list[str] | dict[str, list[str]]


class ApiError(Exception):
    """An error answered with Prolific's envelope: {"error": {status, error_code, title, detail}}."""

    def __init__(self, status: int, detail: Detail, title: str | None = None) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase


def error_code_for(status: int) -> int:
    """The sandbox's `error_code` for a status (Prolific's own codes are not documented)."""
    return ERROR_CODES.get(status, 150000 if status >= 500 else 140000 + status)


def envelope(status: int, detail: Detail, title: str | None = None) -> dict[str, Any]:
    """Prolific's error body (docs/prolific-api.md)."""
    phrase = title
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
    return {"error": {"status": status, "error_code": error_code_for(status), "title": phrase, "detail": detail}}


def json_response(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(
    status: int, detail: Detail, title: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    return json_response(envelope(status, detail, title), status, headers)


@dataclass
class Context:
    """What the request handlers share: state, scheduler, signer, clock, the test hooks and the URLs."""

    config: SandboxConfig
    store: Store
    scheduler: Scheduler
    signer: Signer
    clock: Clock
    faults: FaultPlan
    requests: RequestLog
    user_id: str
    workspace_id: str
    api_url: str = ""
    s3_url: str = ""


Handler = Callable[[Request, Context], Awaitable[Response]]


def check_token(request: Request, ctx: Context) -> None:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(401, "Authentication credentials were not provided: send 'Authorization: Token <API token>'.")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "token" or not value:
        raise ApiError(
            401,
            "Invalid authorization header: use 'Authorization: Token <API token>' (the scheme is Token, not Bearer).",
        )
    expected = ctx.config.token
    if expected is not None and not hmac.compare_digest(value.encode(), expected.encode()):
        raise ApiError(401, "Invalid token.")


def endpoint_of(
    ctx: Context, handler: Handler, check: Callable[[Request, Context], None]
) -> Callable[[Request], Awaitable[Response]]:
    """`handler` as a Starlette endpoint: `check` first (the token), then ApiErrors answered in Prolific's envelope."""

    async def endpoint(request: Request) -> Response:
        try:
            check(request, ctx)
            return await handler(request, ctx)
        except ApiError as exc:
            return error_response(exc.status, exc.detail, exc.title)

    return endpoint


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _schema_detail(schema: object) -> dict[str, list[str]] | None:
    problems = schema_problems(schema)
    if not problems:
        return None
    detail: dict[str, list[str]] = {}
    for problem in problems:
        if problem.field in (None, "strict", "fields"):
            key = "schema" if problem.field is None else f"schema.{problem.field}"
        else:
            key = f"schema.fields.{problem.field}"
        detail.setdefault(key, []).append(problem.message)
    return detail


def _not_found(dataset_id: str) -> str:
    return f"Dataset not found: no dataset with id {dataset_id[:80]!r}."


async def _dataset(ctx: Context, dataset_id: str) -> DatasetRow:
    found = await ctx.store.run(Db.dataset, dataset_id)
    if found is None:
        raise ApiError(404, _not_found(dataset_id))
    return found


def _view(db: Db, ds: DatasetRow) -> dict[str, Any]:
    """The dataset as the API shows it, read afresh (with its imports, for a V4 dataset)."""
    if ds.version == 3:
        return dataset_view(db.dataset_by_pk(ds.pk))
    fresh = db.dataset_by_pk(ds.pk)
    imports = db.imports_of(ds.pk)
    errors = db.errors_of_many([up.id for up in imports if up.error_count])
    return dataset_view(fresh, imports, errors)


async def _dataset_response(ctx: Context, ds: DatasetRow, status: int = 200, **extra: Any) -> Response:
    body = await ctx.store.run(_view, ds)
    body.update(extra)
    return json_response(body, status)


# users and workspaces ---------------------------------------------------------------------------------------------


async def users_me(request: Request, ctx: Context) -> Response:
    user = await ctx.store.run(Db.user)
    return json_response(user_view(user, ctx.workspace_id))


def _page_param(request: Request, name: str, default: int | None) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit():
        raise ApiError(400, {name: [f"A non-negative integer is required, not {text[:20]!r}."]})
    return int(text)


def _page_window(request: Request) -> tuple[int | None, int]:
    """The `limit` (None: everything) and `offset` query parameters of a list request."""
    limit = _page_param(request, "limit", None)
    offset = _page_param(request, "offset", 0) or 0
    if limit == 0:
        raise ApiError(400, {"limit": ["limit must be at least 1."]})
    return limit, offset


def _page_body(
    ctx: Context, request: Request, results: list[dict[str, Any]], count: int, limit: int | None, offset: int
) -> dict[str, Any]:
    """A list answer as Prolific's list endpoints give it: `results`, `meta.count`, and `_links` whose `next` and
    `previous` are objects with an absolute `href` (null at either end) (docs/prolific-api.md, What Prolific's CLI
    and OpenAPI add: 1)."""
    base = f"{ctx.api_url}{request.url.path}"
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("limit", "offset")]

    def href(at: int | None) -> str | None:
        if at is None or limit is None:
            return None
        return f"{base}?{urlencode([*kept, ('limit', limit), ('offset', at)])}"

    more = limit is not None and offset + len(results) < count
    back = max(offset - limit, 0) if limit is not None and offset > 0 else None
    return {
        "results": results,
        "meta": {"count": count},
        "_links": {
            "self": {"href": href(offset) or f"{base}{'?' + urlencode(kept) if kept else ''}"},
            "next": {"href": href(offset + len(results) if more else None)},
            "previous": {"href": href(back)},
        },
    }


async def list_workspaces(request: Request, ctx: Context) -> Response:
    limit, offset = _page_window(request)

    def load(db: Db) -> tuple[list[dict[str, Any]], int]:
        rows, count = db.workspaces(limit, offset)
        user = db.user()
        return [workspace_view(ws, user) for ws in rows], count

    results, count = await ctx.store.run(load)
    return json_response(_page_body(ctx, request, results, count, limit, offset))


async def get_workspace(request: Request, ctx: Context) -> Response:
    workspace_id = request.path_params["workspace_id"]

    def load(db: Db) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        return db.workspace(workspace_id), db.user()

    ws, user = await ctx.store.run(load)
    if ws is None:
        raise ApiError(404, f"Workspace not found: no workspace with id {workspace_id[:80]!r}.")
    return json_response(workspace_view(ws, user))


# datasets -----------------------------------------------------------------------------------------------------------


async def create_dataset(request: Request, ctx: Context) -> Response:
    body = await json_object(request)
    name, workspace_id = body.get("name"), body.get("workspace_id")
    detail: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip():
        detail["name"] = ["This field is required: a non-empty dataset name."]
    elif len(name) > MAX_NAME_LENGTH:
        detail["name"] = [f"Ensure this field has no more than {MAX_NAME_LENGTH} characters."]
    if not isinstance(workspace_id, str) or not workspace_id:
        detail["workspace_id"] = ["This field is required: the id of the workspace the dataset belongs to."]
    schema_obj: dict[str, Any] | None = None
    raw_schema = body.get("schema")
    if raw_schema is not None:
        problems = _schema_detail(raw_schema)
        if problems:
            detail.update(problems)
        else:
            schema_obj = Schema.from_dict(raw_schema).to_dict()
    if detail:
        raise ApiError(400, detail)
    assert isinstance(name, str)
    assert isinstance(workspace_id, str)
    workspace = await ctx.store.run(Db.workspace, workspace_id)
    if workspace is None:
        raise ApiError(404, f"Workspace not found: no workspace with id {workspace_id[:80]!r}.")
    # The version is the workspace's: typed workspaces make V4 datasets (schema or not), others V3 and refuse a
    # schema (docs/prolific-api.md, What Prolific's CLI and OpenAPI add: 6).
    typed = bool(workspace["typed"])
    if not typed and raw_schema is not None:
        raise ApiError(400, {"schema": [UNTYPED_WORKSPACE_DETAIL]})
    ds = await ctx.store.run(Db.create_dataset, name.strip(), workspace_id, 4 if typed else 3, schema_obj)
    return await _dataset_response(ctx, ds, 201)


async def get_dataset(request: Request, ctx: Context) -> Response:
    dataset_id = request.path_params["dataset_id"]

    def load(db: Db) -> dict[str, Any] | None:  # one trip to the store's thread (docs/performance.md, goal 9)
        ds = db.dataset(dataset_id)
        return None if ds is None else _view(db, ds)

    body = await ctx.store.run(load)
    if body is None:
        raise ApiError(404, _not_found(dataset_id))
    return json_response(body)


async def patch_dataset(request: Request, ctx: Context) -> Response:
    ds = await _dataset(ctx, request.path_params["dataset_id"])
    body = await json_object(request)
    if ds.version == 3:
        raise ApiError(
            400,
            "This is a V3 (legacy CSV) dataset: it has no schema. Create a V4 dataset (with a schema) to use schemas.",
        )
    if "schema" not in body:
        raise ApiError(400, {"schema": ["This field is required: the whole new schema {strict, fields}."]})
    problems = _schema_detail(body["schema"])
    if problems:
        raise ApiError(400, problems)
    new = Schema.from_dict(body["schema"])
    running = await ctx.store.run(Db.running_migration, ds.pk)
    if running is not None:
        raise ApiError(
            409,
            f"A schema migration ({running.id}) is still running on this dataset: wait until it is no longer "
            "'processing', then change the schema again.",
        )
    if not ds.has_schema:
        released = await ctx.store.run(Db.set_first_schema, ds.pk, new.to_dict())
        for upload_id in released:
            ctx.scheduler.note_queued(upload_id)
        if released:
            ctx.scheduler.kick(ds.pk)
        return await _dataset_response(ctx, ds)
    if new.is_empty:
        raise ApiError(400, {"schema.fields": ["This dataset has a schema: the new schema needs at least one field."]})
    assert ds.schema is not None
    old_group = Schema.from_dict(ds.schema).task_group_key
    if ds.total > 0 and new.task_group_key != old_group:
        raise ApiError(
            400,
            {
                "schema.fields": [
                    f"The task_group_id field cannot change once the dataset has datapoints (it is "
                    f"{old_group!r}; this schema makes it {new.task_group_key!r})."
                ]
            },
        )
    job = await ctx.store.run(Db.change_schema, ds.pk, new.to_dict())
    ctx.scheduler.kick(ds.pk)
    return await _dataset_response(ctx, ds, 200, migration_job_id=job.id)


async def dataset_status(request: Request, ctx: Context) -> Response:
    ds = await _dataset(ctx, request.path_params["dataset_id"])
    return json_response({"status": ds.v3_status})


def _filename_problem(name: str) -> str | None:
    if not name or len(name) > MAX_FILENAME_LENGTH:
        return f"the filename must be 1 to {MAX_FILENAME_LENGTH} characters"
    if "/" in name or "\\" in name:
        return "the filename must be one path segment: no '/' or '\\'"
    if name in (".", "..") or name.startswith("."):
        return "the filename cannot start with '.'"
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        return "the filename cannot contain control or invisible characters"
    return None


async def upload_url(request: Request, ctx: Context) -> Response:
    ds = await _dataset(ctx, request.path_params["dataset_id"])
    filename: str = request.path_params["filename"]
    problem = _filename_problem(filename)
    if problem is not None:
        raise ApiError(400, {"filename": [f"{problem} (got {filename[:80]!r})."]})
    ext = os.path.splitext(filename)[1].lower()
    allowed = V4_EXTENSIONS if ds.version == 4 else V3_EXTENSIONS
    if ext not in allowed:
        kind = "V4" if ds.version == 4 else "V3 (legacy)"
        hint = " (upload a .ndjson file as .jsonl)" if ext == ".ndjson" else ""
        raise ApiError(
            400,
            {"filename": [f"{kind} datasets take {' or '.join(allowed)} files, not {ext or 'no extension'}{hint}."]},
        )
    content_type = CONTENT_TYPES[ext.lstrip(".")]
    now = ctx.clock.now()
    lifetime = int(ctx.config.url_lifetime)
    expires_at = math.floor(now) + lifetime
    up = await ctx.store.run(Db.create_upload, ds, filename, content_type, float(expires_at))
    body: dict[str, Any] = {
        "dataset_id": ds.id,
        "upload_url": ctx.signer.presign(ctx.s3_url, up.file_key, content_type, now, lifetime),
        "http_method": "PUT",
        "expires_at": iso(expires_at),
        "content_type": content_type,
        "file_key": up.file_key,
    }
    if ds.version == 4:
        body["import_id"] = up.id
    return json_response(body, 201)


class _Job(Protocol):
    """What an import and a migration row share: their id, their dataset, how many errors they itemise."""

    @property
    def id(self) -> str: ...
    @property
    def dataset_pk(self) -> int: ...
    @property
    def error_count(self) -> int: ...


J = TypeVar("J", bound=_Job)


async def _job_response(
    request: Request,
    ctx: Context,
    key: str,
    find: Callable[[Db, str], J | None],
    view: Callable[[J, str, list[JobError]], dict[str, Any]],
    missing: str,
) -> Response:
    """One job of the dataset in the path (the id in path parameter `key`) with its itemised errors; a 404 worded
    by `missing` (with {dataset} and {job} filled in) when that dataset has no such job."""
    ds = await _dataset(ctx, request.path_params["dataset_id"])
    job_id = request.path_params[key]

    def load(db: Db) -> dict[str, Any] | None:
        job = find(db, job_id)
        if job is None or job.dataset_pk != ds.pk:
            return None
        return view(job, ds.id, db.errors_of(job.id) if job.error_count else [])

    body = await ctx.store.run(load)
    if body is None:
        raise ApiError(404, missing.format(dataset=ds.id, job=repr(job_id[:80])))
    return json_response(body)


def _import(db: Db, import_id: str) -> StoredUpload | None:
    up = db.upload(import_id)
    return up if up is not None and up.kind == "import" else None


async def get_import(request: Request, ctx: Context) -> Response:
    missing = "Import not found: dataset {dataset} has no import {job}."
    return await _job_response(request, ctx, "import_id", _import, import_view, missing)


async def get_migration(request: Request, ctx: Context) -> Response:
    missing = "Schema migration not found: dataset {dataset} has no migration {job}."
    return await _job_response(request, ctx, "job_id", Db.migration, migration_view, missing)


async def append_datapoints(request: Request, ctx: Context) -> Response:
    ds = await _dataset(ctx, request.path_params["dataset_id"])
    if ds.version == 3:
        raise ApiError(400, "Appending datapoints works on V4 datasets only; this is a V3 (legacy CSV) dataset.")
    if not ds.has_schema:
        raise ApiError(400, "This dataset has no schema yet: set one (PATCH the dataset) before appending records.")
    content_type = request.headers.get("content-type", "")
    if "csv" in content_type.lower():
        raise ApiError(415, "Append takes JSON Lines (Content-Type: application/x-ndjson), not CSV.")
    body = await _limited_body(request, MAX_APPEND_BYTES)
    busy = await ctx.store.run(Db.has_active_work, ds.pk)
    lock = ctx.scheduler.lock(ds.pk)
    if busy or lock.locked():
        raise ApiError(
            409,
            "An import or schema migration is in progress on this dataset: retry once it has finished "
            "(the dataset's imports and the migration status show when).",
        )
    async with lock:
        try:
            result = await ctx.store.run(append_records, ds.pk, body, ctx.config.rules)
        except AppendError as exc:
            raise ApiError(400, str(exc)) from None
    return json_response(result)


async def _limited_body(request: Request, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"The body is larger than {limit // (1024 * 1024)} MiB.")
        parts.append(chunk)
    return b"".join(parts)


async def list_batches(request: Request, ctx: Context) -> Response:
    workspace_id = request.query_params.get("workspace_id")
    if not workspace_id:
        raise ApiError(400, {"workspace_id": ["This query parameter is required."]})
    limit, offset = _page_window(request)

    def load(db: Db) -> tuple[list[dict[str, Any]], int]:
        batches, count = db.batches(workspace_id, limit, offset)
        datasets = db.datasets_by_id([b["dataset_id"] for b in batches if b["dataset_id"]])
        return [batch_view(b, datasets) for b in batches], count

    results, count = await ctx.store.run(load)
    return json_response(_page_body(ctx, request, results, count, limit, offset))


# the app ----------------------------------------------------------------------------------------------------------


def build_api_app(ctx: Context, extra_routes: Sequence[Route] = ()) -> Starlette:
    """The API port's ASGI app: the emulated API, plus `extra_routes` (the admin routes)."""

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, endpoint_of(ctx, handler, check_token), methods=methods)

    routes = [
        route("/api/v1/users/me/", users_me, ["GET"]),
        route("/api/v1/workspaces/", list_workspaces, ["GET"]),
        route("/api/v1/workspaces/{workspace_id}/", get_workspace, ["GET"]),
        route(DATASETS, create_dataset, ["POST"]),
        route(DATASETS + "/{dataset_id}", get_dataset, ["GET"]),
        route(DATASETS + "/{dataset_id}", patch_dataset, ["PATCH"]),
        route(DATASETS + "/{dataset_id}/status", dataset_status, ["GET"]),
        route(DATASETS + "/{dataset_id}/upload-url/{filename:path}", upload_url, ["GET"]),
        route(DATASETS + "/{dataset_id}/imports/{import_id}", get_import, ["GET"]),
        route(DATASETS + "/{dataset_id}/schema-migrations/{job_id}", get_migration, ["GET"]),
        route(DATASETS + "/{dataset_id}/datapoints", append_datapoints, ["POST"]),
        route("/api/v1/data-collection/batches", list_batches, ["GET"]),
        *extra_routes,
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return error_response(404, _not_found_detail(request, routes))
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return error_response(
                405,
                f"Method {request.method} is not allowed on {request.url.path}; allowed: {allowed}.",
                headers=exc.headers,
            )
        return error_response(exc.status_code, str(exc.detail))

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(500, f"Internal error in the sandbox: {type(exc).__name__}: {exc}")

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})
    app.router.redirect_slashes = False
    return app


def _not_found_detail(request: Request, routes: list[Route]) -> str:
    path = request.url.path
    alternative = path[:-1] if path.endswith("/") else path + "/"
    scope = dict(request.scope, path=alternative)
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match != Match.NONE:
            return f"No such endpoint: {request.method} {path}. Did you mean {alternative}?"
    return f"No such endpoint: {request.method} {path}."
