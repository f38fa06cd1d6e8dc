"""`ProlificClient`: the Prolific datasets API over one `httpx2.AsyncClient`. It knows nothing of MCP.

- The token and our User-Agent go only to the API origin, added per request; the presigned PUT gets neither.
- Redirects are never followed; with a loopback API origin, the environment's HTTP(S)_PROXY is ignored.
- Ids are checked as one safe path segment and percent-encoded; filenames are sent as one encoded segment.
- Failures are retried per `prolific_mcp.api.retry.RETRY_TABLE`; a write whose outcome is unknown raises an
  `Ambiguous*Error` instead of being sent again.
"""

from __future__ import annotations

import logging
import math
import random as _random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import anyio
import httpx2
from pydantic import BaseModel, SecretStr, ValidationError

from prolific_mcp import USER_AGENT
from prolific_mcp.api.answers import parse_json, parse_model
from prolific_mcp.api.errors import (
    AmbiguousCreateError,
    AmbiguousSchemaUpdateError,
    AmbiguousUploadUrlError,
    ApiUnreachableError,
    BadRequestError,
    ProlificError,
    Resource,
    UnexpectedResponseError,
    error_for_status,
)
from prolific_mcp.api.models import (
    AppendResult,
    Batch,
    CreateDatasetRequest,
    Dataset,
    DatasetSchema,
    DatasetStatus,
    ImportJob,
    MigrationJob,
    PutResult,
    SchemaUpdate,
    UpdateSchemaRequest,
    UploadTarget,
    User,
    Workspace,
)
from prolific_mcp.api.paths import (
    BATCHES,
    DATASETS,
    MAX_PAGES,
    PAGE_SIZE,
    USERS_ME,
    WORKSPACES,
    check_base_url,
    dataset_path,
    next_page,
    origin,
    safe_filename,
)
from prolific_mcp.api.retry import (
    CALL_BUDGET,
    AmbiguousOutcome,
    AttemptFailure,
    CallKind,
    Condition,
    Timing,
    call_with_retries,
    condition_for_exception,
    condition_for_status,
    parse_retry_after,
)
from prolific_mcp.api.s3 import (
    CLEANUP_SECONDS,
    DEFAULT_CHUNK_SIZE,
    ERROR_BODY_LIMIT,
    FileSource,
    Pacer,
    ProgressCallback,
    put_presigned,
    read_bounded,
)
from prolific_mcp.ids import check_id
from prolific_mcp.net import is_loopback_host
from prolific_mcp.redaction import install_log_redaction, register_secret

__all__ = ["DEFAULT_TIMEOUT", "ProlificClient"]

DEFAULT_TIMEOUT: Final = httpx2.Timeout(connect=10.0, read=30.0, write=60.0, pool=10.0)
SUCCESS_BODY_LIMIT: Final = 64 * 1024 * 1024
ORPHAN_CLOCK_SKEW: Final = timedelta(minutes=10)
"""How far Prolific's clock may be behind ours when looking for imports created by an ambiguous upload-url."""
_APPEND_CONFLICT: Final = (
    "an import or a schema migration is running on the dataset: wait for it to finish, then append again"
)


M = TypeVar("M", bound=BaseModel)
_log = logging.getLogger("prolific_mcp.api")


class ProlificClient:
    """The Prolific datasets API. Use as `async with ProlificClient(url, token) as client: ...`.

    `sandbox=True` says the API is our local sandbox: the base URL must be loopback, and plain-http upload URLs
    are then accepted, to loopback hosts only. `sleep`, `clock` and `random` are injected for tests; `deadline`
    arguments are absolute times on `clock`. Each method raises a `ProlificError` subclass (see `errors`) or,
    before any I/O, `InvalidIdError` / `InvalidFilenameError` for arguments that cannot be sent.
    """

    def __init__(
        self,
        base_url: str,
        token: str | SecretStr | None,
        *,
        sandbox: bool = False,
        timeout: httpx2.Timeout | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        register_secret(secret)
        install_log_redaction()
        self._base = check_base_url(base_url, sandbox=sandbox)
        self._base_path = self._base.path.rstrip("/")
        self._origin = origin(self._base)
        self._token = SecretStr(secret) if secret else None
        self._sandbox = sandbox
        self._timing = Timing(sleep=sleep, clock=clock, random=random)
        self._http = httpx2.AsyncClient(
            timeout=timeout or DEFAULT_TIMEOUT,
            follow_redirects=False,
            # Loopback (the sandbox and its upload URLs) must never go through an HTTP(S)_PROXY from the
            # environment; only a loopback API origin leads to loopback requests.
            trust_env=not is_loopback_host(self._base.host),
            transport=transport,
        )
        # Nothing of ours goes to S3: our User-Agent is added per API request only.
        self._http.headers.pop("user-agent", None)

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        with anyio.CancelScope(shield=True):
            await self._http.aclose()

    def __repr__(self) -> str:
        return f"ProlificClient(base_url={str(self._base)!r}, sandbox={self._sandbox})"

    @property
    def base_url(self) -> str:
        return str(self._base)

    def rebase(self, base_url: str) -> None:
        """Send later calls to another API origin (the sandbox child restarted on a new port).

        The same checks as in the constructor apply, and the new origin must be loopback exactly when the old one
        was (proxy handling was decided for it). A call under way sends its next attempt to the new origin.
        """
        base = check_base_url(base_url, sandbox=self._sandbox)
        if is_loopback_host(base.host) != is_loopback_host(self._base.host):
            raise ValueError("the API origin can only move between loopback addresses")
        self._base, self._base_path, self._origin = base, base.path.rstrip("/"), origin(base)

    @property
    def sandbox(self) -> bool:
        return self._sandbox

    def deadline_in(self, seconds: float) -> float:
        """The absolute deadline `seconds` from now, on the client's clock."""
        return self._timing.clock() + seconds

    # --- the request core -----------------------------------------------------------------------------------

    def _url(self, path: str) -> httpx2.URL:
        return self._base.copy_with(path=self._base_path + path, query=None, fragment=None)

    def _api_headers(self, url: httpx2.URL) -> dict[str, str]:
        """Authorization and User-Agent, only for a request to the API origin."""
        if origin(url) != self._origin:
            return {}
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Token {self._token.get_secret_value()}"
        return headers

    def _deadline(self, deadline: float | None) -> float:
        own = self._timing.clock() + CALL_BUDGET
        return own if deadline is None else min(own, deadline)

    def _transport_failure(self, exc: httpx2.HTTPError, resource: Resource) -> AttemptFailure | ProlificError:
        where = f"Prolific at {self._origin[0]}://{self._base.netloc.decode('ascii', 'replace')}"
        what = resource.describe()
        condition = condition_for_exception(exc)
        retry_later = "try again in a minute; if it persists, check https://status.prolific.com"
        if condition is None:
            return ApiUnreachableError(
                f"the request for {what} to {where} failed ({type(exc).__name__}): check PROLIFIC_URL and any "
                "HTTP(S)_PROXY setting",
            )
        messages = {
            Condition.CONNECT_ERROR: f"could not connect to {where}: check the network and PROLIFIC_URL",
            Condition.CONNECT_TIMEOUT: f"connecting to {where} timed out: check the network and PROLIFIC_URL",
            Condition.POOL_TIMEOUT: f"no connection to {where} was free in time (too many calls at once)",
            Condition.WRITE_TIMEOUT: f"sending the request for {what} to {where} stalled",
            Condition.READ_TIMEOUT: f"{where} did not answer the request for {what} in time",
            Condition.RESET: f"the connection to {where} closed before the answer for {what} arrived",
        }
        return AttemptFailure(condition, ApiUnreachableError(f"{messages[condition]}; {retry_later}"))

    async def _call(
        self,
        kind: CallKind,
        method: str,
        path: str,
        *,
        resource: Resource,
        deadline: float | None,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        conflict_hint: str | None = None,
    ) -> tuple[Any, int]:
        """Send one API call under `kind`'s retry rule; return the parsed JSON body and the attempts made."""
        limit = self._deadline(deadline)

        async def attempt(number: int) -> Any:
            url = self._url(path)  # per attempt: a retry follows the API origin if it moved (`rebase`)
            headers = self._api_headers(url)
            if content_type is not None:
                headers["Content-Type"] = content_type
            request = self._http.build_request(
                method, url, params=params, json=json_body, content=content, headers=headers
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx2.HTTPError as exc:
                raise self._transport_failure(exc, resource) from None
            try:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        body, truncated = await read_bounded(response, SUCCESS_BODY_LIMIT)
                    except httpx2.HTTPError as exc:
                        raise self._transport_failure(exc, resource) from None
                    if truncated:
                        raise UnexpectedResponseError(
                            f"Prolific's answer for {resource.describe()} is larger than "
                            f"{SUCCESS_BODY_LIMIT // 2**20} MiB: not read"
                        )
                    return parse_json(body, status, resource)
                try:
                    body, _ = await read_bounded(response, ERROR_BODY_LIMIT)
                except httpx2.HTTPError:
                    body = b""
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                error = error_for_status(
                    status,
                    body,
                    resource=resource,
                    retry_after=retry_after,
                    has_token=self._token is not None,
                    conflict_hint=conflict_hint,
                )
                raise AttemptFailure(condition_for_status(status), error, retry_after)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
                    await response.aclose()

        return await call_with_retries(kind, attempt, timing=self._timing, deadline=limit)

    async def _read(self, model: type[M], path: str, resource: Resource, deadline: float | None) -> M:
        """GET `path`, retried as a read, and parse the answer as `model`."""
        data, _ = await self._call(CallKind.READ, "GET", path, resource=resource, deadline=deadline)
        return parse_model(model, data, resource)

    async def _write_once(
        self,
        method: str,
        path: str,
        body: Any,
        resource: Resource,
        deadline: float | None,
        ambiguous: Callable[[str], ProlificError],
    ) -> Any:
        """A write never sent twice once it may have left (CallKind.CREATE); if its outcome is unknown, raises
        `ambiguous(cause)`."""
        try:
            data, _ = await self._call(
                CallKind.CREATE, method, path, resource=resource, deadline=deadline, json_body=body
            )
        except AmbiguousOutcome as outcome:
            raise ambiguous(outcome.cause) from None
        return data

    async def _paginate(
        self, path: str, params: Mapping[str, str | int], resource: Resource, deadline: float | None
    ) -> list[Any]:
        """Collect `results` over every page: follow `_links.next.href` where Prolific gives one, otherwise step
        `limit`/`offset` while `meta.count` says there is more (docs/prolific-api.md, What Prolific's CLI and OpenAPI
        add: 1). At most MAX_PAGES pages; a page with nothing new, or a link already followed, ends the walk."""
        limit = self._deadline(deadline)
        items: list[Any] = []
        seen: set[str] = set()
        offset = 0
        request: tuple[str, Mapping[str, str | int]] = (path, {**params, "limit": PAGE_SIZE, "offset": 0})
        followed: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for _ in range(MAX_PAGES):
            page_path, page_params = request
            followed.add((page_path, tuple(sorted((k, str(v)) for k, v in page_params.items()))))
            data, _ = await self._call(
                CallKind.READ, "GET", page_path, resource=resource, deadline=limit, params=page_params
            )
            if isinstance(data, list):
                page, more, link, count = data, False, None, None
            elif isinstance(data, dict) and isinstance(data.get("results"), list):
                page = data["results"]
                more, link = next_page(data, self._url(page_path), self._origin, self._base_path)
                meta = data.get("meta")
                # Prolific's `_links` is authoritative (`next.href` null: the last page); without it, `meta.count`.
                count = meta.get("count") if isinstance(meta, dict) and "_links" not in data else None
            else:
                raise UnexpectedResponseError(
                    f"Prolific's answer for {resource.describe()} has no 'results' list: try again; if it "
                    "persists, please report it"
                )
            fresh = [item for item in page if not (isinstance(item, dict) and str(item.get("id")) in seen)]
            seen.update(str(item.get("id")) for item in fresh if isinstance(item, dict))
            items.extend(fresh)
            offset += len(page)
            if not fresh:
                break
            if link is not None:
                key = (link[0], tuple(sorted(link[1].items())))
                if key in followed:
                    break
                request = link
            elif more or (isinstance(count, int) and len(items) < count):
                request = (path, {**params, "limit": PAGE_SIZE, "offset": offset})
            else:
                break
        return items

    # --- accounts, workspaces, batches ----------------------------------------------------------------------

    async def get_me(self, *, deadline: float | None = None) -> User:
        """`GET /api/v1/users/me/`: the token's user (a cheap token check)."""
        resource = Resource("user account (users/me)")
        data, _ = await self._call(CallKind.READ, "GET", USERS_ME, resource=resource, deadline=deadline)
        return parse_model(User, data, resource)

    async def list_workspaces(self, *, deadline: float | None = None) -> list[Workspace]:
        """`GET /api/v1/workspaces/`, every page."""
        resource = Resource("workspace list")
        items = await self._paginate(WORKSPACES, {}, resource, deadline)
        return [parse_model(Workspace, item, resource) for item in items]

    async def list_batches(self, workspace_id: str, *, deadline: float | None = None) -> list[Batch]:
        """`GET /api/v1/data-collection/batches?workspace_id=…`: the workspace's batches and their datasets."""
        check_id(workspace_id, "workspace_id")
        resource = Resource("workspace", workspace_id)
        items = await self._paginate(BATCHES, {"workspace_id": workspace_id}, resource, deadline)
        return [parse_model(Batch, item, resource) for item in items]

    # --- datasets -------------------------------------------------------------------------------------------

    async def create_dataset(
        self, name: str, workspace_id: str, schema: DatasetSchema | None, *, deadline: float | None = None
    ) -> Dataset:
        """POST a new dataset, with `schema` when it has fields. The workspace decides the version (read
        `schema_version`); a workspace without typed datasets refuses a schema (400). Never sent twice once it may
        have left."""
        check_id(workspace_id, "workspace_id")
        if not isinstance(name, str) or not name.strip():
            raise BadRequestError("the dataset needs a non-empty name", status=None)
        body = CreateDatasetRequest(name=name, workspace_id=workspace_id, dataset_schema=schema).to_api()
        resource = Resource("workspace", workspace_id)
        started = datetime.now(UTC)
        data = await self._write_once(
            "POST", DATASETS, body, resource, deadline, lambda cause: AmbiguousCreateError(name, started, cause)
        )
        return parse_model(Dataset, data, Resource("new dataset", name))

    async def update_schema(
        self, dataset_id: str, schema: DatasetSchema, *, deadline: float | None = None
    ) -> SchemaUpdate:
        """PATCH the dataset's whole schema; `migration_job_id` is set when a migration started."""
        check_id(dataset_id, "dataset_id")
        resource = Resource("dataset", dataset_id)
        body = UpdateSchemaRequest(dataset_schema=schema).to_api()
        path = dataset_path(dataset_id)
        data = await self._write_once(
            "PATCH", path, body, resource, deadline, lambda cause: AmbiguousSchemaUpdateError(dataset_id, cause)
        )
        if isinstance(data, dict) and isinstance(data.get("dataset"), dict):
            return parse_model(SchemaUpdate, data, resource)
        job = data.get("migration_job_id") if isinstance(data, dict) else None
        migration_job_id = str(job) if job else None
        if isinstance(data, dict) and data.get("id"):
            return SchemaUpdate(dataset=parse_model(Dataset, data, resource), migration_job_id=migration_job_id)
        # A 2xx without the dataset (an empty body, a 204) is success: read the dataset as it now is
        # (docs/prolific-api.md, What Prolific's CLI and OpenAPI add: 4).
        dataset = await self.get_dataset(dataset_id, deadline=deadline)
        return SchemaUpdate(dataset=dataset, migration_job_id=migration_job_id, answer_empty=migration_job_id is None)

    async def get_dataset(self, dataset_id: str, *, deadline: float | None = None) -> Dataset:
        """GET a dataset; for V4 it lists the imports, most recent first."""
        check_id(dataset_id, "dataset_id")
        path = dataset_path(dataset_id)
        return await self._read(Dataset, path, Resource("dataset", dataset_id), deadline)

    async def get_dataset_status(self, dataset_id: str, *, deadline: float | None = None) -> DatasetStatus:
        """GET a V3 dataset's status."""
        check_id(dataset_id, "dataset_id")
        path = dataset_path(dataset_id, "status")
        return await self._read(DatasetStatus, path, Resource("dataset", dataset_id), deadline)

    async def get_upload_url(
        self, dataset_id: str, filename: str, *, expect_import_id: bool = True, deadline: float | None = None
    ) -> UploadTarget:
        """GET an upload URL (this creates an import). Retried at most once, and only if it surely never left.

        `expect_import_id=False` for a V3 dataset, whose answer has no import. After an ambiguous failure,
        raises AmbiguousUploadUrlError naming the `uninitialised` imports it may have created.
        """
        check_id(dataset_id, "dataset_id")
        name = safe_filename(filename)
        resource = Resource("dataset", dataset_id)
        started = datetime.now(UTC)
        try:
            data, _ = await self._call(
                CallKind.UPLOAD_URL,
                "GET",
                dataset_path(dataset_id, "upload-url", name),
                resource=resource,
                deadline=deadline,
            )
        except AmbiguousOutcome as outcome:
            orphans = await self._find_orphans(dataset_id, name, started)
            raise AmbiguousUploadUrlError(dataset_id, name, outcome.cause, orphans) from None
        if not isinstance(data, dict):
            raise UnexpectedResponseError(
                f"Prolific's upload URL answer for dataset {dataset_id} is not an object: please report it"
            )
        try:
            target = UploadTarget.from_api(data, filename=name, dataset_id=dataset_id)
        except ValidationError:
            raise UnexpectedResponseError(
                f"Prolific's upload URL answer for dataset {dataset_id} has no upload_url, so nothing can be "
                "uploaded: try again; if it persists, please report it"
            ) from None
        if expect_import_id and not target.import_id:
            raise UnexpectedResponseError(
                f"Prolific's upload URL answer for dataset {dataset_id} has no import_id, so the import could "
                "not be followed: check that the dataset is V4 (it has a schema_version of 4)"
            )
        return target

    async def _find_orphans(self, dataset_id: str, filename: str, started: datetime) -> list[str] | None:
        """Ids of `uninitialised` imports for `filename` created since `started` (minus clock skew); None if
        the dataset could not be read."""
        try:
            dataset = await self.get_dataset(dataset_id, deadline=self.deadline_in(CALL_BUDGET))
        except ProlificError:
            return None
        since = started - ORPHAN_CLOCK_SKEW
        return [
            job.import_id
            for job in dataset.imports or []
            if job.status == "uninitialised"
            and (job.created_at is None or job.created_at.tzinfo is None or job.created_at >= since)
            and (job.filename is None or job.filename == filename)
        ]

    async def get_import(self, dataset_id: str, import_id: str, *, deadline: float | None = None) -> ImportJob:
        """GET one import job."""
        check_id(dataset_id, "dataset_id")
        check_id(import_id, "import_id")
        path = dataset_path(dataset_id, "imports", import_id)
        resource = Resource("import", import_id, dataset_id)
        data, _ = await self._call(CallKind.READ, "GET", path, resource=resource, deadline=deadline)
        if isinstance(data, dict):
            # The ids may be missing from the answer: they are the ones asked for, as Prolific's CLI also assumes
            # (docs/prolific-api.md, What Prolific's CLI and OpenAPI add: 3).
            data = {**data, "import_id": data.get("import_id") or import_id}
            data["dataset_id"] = data.get("dataset_id") or dataset_id
        return parse_model(ImportJob, data, resource)

    async def get_migration(self, dataset_id: str, job_id: str, *, deadline: float | None = None) -> MigrationJob:
        """GET one schema migration job."""
        check_id(dataset_id, "dataset_id")
        check_id(job_id, "migration_job_id")
        path = dataset_path(dataset_id, "schema-migrations", job_id)
        return await self._read(MigrationJob, path, Resource("migration", job_id, dataset_id), deadline)

    async def append_datapoints(self, dataset_id: str, body: bytes, *, deadline: float | None = None) -> AppendResult:
        """POST records already written as JSONL (the caller checks the limits). Retried like a read (appends are
        idempotent); `retried` says so."""
        check_id(dataset_id, "dataset_id")
        resource = Resource("dataset", dataset_id)
        data, attempts = await self._call(
            CallKind.APPEND,
            "POST",
            dataset_path(dataset_id, "datapoints"),
            resource=resource,
            deadline=deadline,
            content=body,
            content_type="application/x-ndjson",
            conflict_hint=_APPEND_CONFLICT,
        )
        if not isinstance(data, dict):
            raise UnexpectedResponseError(
                f"Prolific's answer to the append on dataset {dataset_id} is not an object: please report it"
            )
        result = parse_model(AppendResult, data, resource)
        result.attempts = attempts
        return result

    # --- the presigned PUT ----------------------------------------------------------------------------------

    async def put_file(
        self,
        target: UploadTarget,
        source: FileSource,
        *,
        size: int,
        content_type: str | None = None,
        on_progress: ProgressCallback | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        deadline: float | None = None,
        expected_sha256: str | None = None,
        pace: Pacer | None = None,
    ) -> PutResult:
        """Stream `size` bytes of `source` (a path, an open descriptor or binary file) to the upload URL.

        Sends `Content-Length: size` and exactly `target.content_type` (or `content_type`), nothing else of
        ours; each retry reads again from byte 0. A descriptor is read with pread and never reopened by path.
        Raises FileChangedError if the file has more or fewer bytes than `size`, UnsafeUploadUrlError before
        any byte for a refused URL, UploadUrlExpiredError when a new upload URL is needed. `deadline` bounds
        the retry waits only; an upload in progress is never cut short by it. With `expected_sha256`, FileEditedError
        if the bytes sent do not hash to it (stopped before the last chunk). `pace(end, last)` is awaited before
        each chunk goes out (on every attempt); what it raises ends the upload before the store has the whole file.
        """
        return await put_presigned(
            self._http,
            target,
            source,
            size=size,
            content_type=content_type,
            on_progress=on_progress,
            chunk_size=chunk_size,
            timing=self._timing,
            deadline=math.inf if deadline is None else deadline,
            sandbox=self._sandbox,
            expected_sha256=expected_sha256,
            pace=pace,
        )
