"""The client against raw loopback servers: headers, retries, resets, stalls, redirects, cancellation, leaks.

Each test scripts the server connection by connection (every answer closes the connection, so one connection is
one attempt). The clock and sleep are fake: retries cost no real time.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import orjson
import pytest

from prolific_mcp import USER_AGENT
from prolific_mcp.api.client import ProlificClient
from prolific_mcp.api.errors import (
    AmbiguousCreateError,
    AmbiguousSchemaUpdateError,
    AmbiguousUploadUrlError,
    ApiUnreachableError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FileChangedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RedirectRefusedError,
    ServerError,
    UnexpectedResponseError,
    UnsafeUploadUrlError,
    UploadError,
    UploadFailedError,
    UploadRejectedError,
    UploadSignatureMismatchError,
    UploadTooLargeError,
    UploadUrlExpiredError,
)
from prolific_mcp.api.models import DatasetSchema, SchemaField, UploadTarget

from .conftest import (
    SENTINEL,
    SIGNATURE,
    Conn,
    FakeClock,
    Handler,
    assert_exception_clean,
    assert_no_leak,
    drop,
    read_head,
    read_request,
    reset_after,
    respond,
    respond_json,
    respond_s3,
    response_bytes,
    serve,
    stall,
    stall_after_request,
)

DS = "0192a3b5-e8f9-7a0b-1c2d-3e4f5a6b7c8d"
WS = "6278acb09062db3b35bcbeb0"
IMP = "01935c2d-1a2b-3c4d-5e6f-7a8b9c0d1e2f"
DATASETS = "/api/v1/data-collection/datasets"
FAST = httpx2.Timeout(5.0)


def make(url: str, clock: FakeClock, **kwargs: Any) -> ProlificClient:
    kwargs.setdefault("timeout", FAST)
    kwargs.setdefault("sandbox", True)
    return ProlificClient(url, SENTINEL, sleep=clock.sleep, clock=clock, random=lambda: 0.5, **kwargs)


def dataset_body(**extra: Any) -> bytes:
    return orjson.dumps(
        {"id": DS, "name": "Reviews", "workspace_id": WS, "schema_version": 4, "schema": None, "imports": [], **extra}
    )


def target_for(url: str, **extra: Any) -> UploadTarget:
    return UploadTarget.from_api(
        {
            "upload_url": f"{url}/bucket/datasets/k.jsonl?X-Amz-Expires=900&X-Amz-Signature={SIGNATURE}",
            "import_id": IMP,
            "content_type": "application/x-ndjson",
            **extra,
        },
        filename="data.jsonl",
        dataset_id=DS,
    )


def write_file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = bytes((i * 7 + 3) % 251 for i in range(size))
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    return path, data


def is_open(path: Path) -> bool:
    """Whether this process holds `path` open (Linux: /proc/self/fd)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == str(path):
                return True
        except OSError:
            continue
    return False


# --- API requests ------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_api_headers_go_to_the_api_and_proxies_are_bypassed(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with anyio.fail_after(10):
        async with (
            serve(respond_json(200, b'{"id": "u1", "email": "r@example.org"}')) as server,
            make(server.url, clock) as client,
        ):
            user = await client.get_me()
    assert user.id == "u1"
    (conn,) = server.connections
    assert conn.head == "GET /api/v1/users/me/ HTTP/1.1"
    assert conn.headers["authorization"] == f"Token {SENTINEL}"
    assert conn.headers["user-agent"] == USER_AGENT


@pytest.mark.anyio
async def test_no_token_sends_no_authorization(clock: FakeClock) -> None:
    with anyio.fail_after(10):
        async with (
            serve(respond_json(401, b'{"error": {"title": "Unauthorized", "detail": "no token"}}')) as server,
            ProlificClient(server.url, None, sandbox=True, sleep=clock.sleep, clock=clock) as client,
        ):
            with pytest.raises(AuthenticationError, match="no API token was sent"):
                await client.get_me()
    assert "authorization" not in server.connections[0].headers


@pytest.mark.anyio
async def test_reads_are_retried_with_backoff_and_retry_after(clock: FakeClock) -> None:
    with anyio.fail_after(10):
        async with (
            serve(
                respond_json(503, b'{"error": {"title": "down"}}', {"Retry-After": "1"}),
                respond(502, b"<html>bad gateway</html>", {"Content-Type": "text/html"}),
                respond_json(200, dataset_body()),
            ) as server,
            make(server.url, clock) as client,
        ):
            dataset = await client.get_dataset(DS)
    assert dataset.id == DS
    assert [c.head for c in server.connections] == [f"GET {DATASETS}/{DS} HTTP/1.1"] * 3
    assert clock.waits == [1.0, 0.5]  # max(Retry-After 1, 0.25), then max(none, 0.5)


@pytest.mark.anyio
@pytest.mark.parametrize("retry_after", ["3600", "Fri, 01 Jan 2100 00:00:00 GMT"], ids=["seconds", "http-date"])
async def test_rate_limit_longer_than_the_deadline_answers_at_once(clock: FakeClock, retry_after: str) -> None:
    with anyio.fail_after(10):
        async with (
            serve(respond_json(429, b"", {"Retry-After": retry_after})) as server,
            make(server.url, clock) as client,
        ):
            with pytest.raises(RateLimitedError, match=r"^rate-limited by Prolific: retry after \d+ s$") as info:
                await client.get_import(DS, IMP)
    assert len(server.connections) == 1 and clock.waits == []
    assert info.value.retry_after is not None and info.value.retry_after >= 3600


@pytest.mark.anyio
async def test_junk_retry_after_falls_back_to_backoff(clock: FakeClock) -> None:
    with anyio.fail_after(10):
        async with (
            serve(
                respond_json(429, b"", {"Retry-After": "whenever"}),
                respond_json(200, orjson.dumps({"import_id": IMP, "status": "queued"})),
            ) as server,
            make(server.url, clock) as client,
        ):
            job = await client.get_import(DS, IMP)
    assert job.status == "queued" and not job.is_terminal
    assert clock.waits == [0.25]


@pytest.mark.anyio
async def test_callers_deadline_stops_retries_without_sleeping(clock: FakeClock) -> None:
    with anyio.fail_after(10):
        async with (
            serve(respond_json(503, b"", {"Retry-After": "10"})) as server,
            make(server.url, clock) as client,
        ):
            with pytest.raises(ServerError, match="HTTP 503"):
                await client.get_dataset(DS, deadline=client.deadline_in(5))
    assert len(server.connections) == 1 and clock.waits == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (404, b"", NotFoundError, f"the dataset {DS} was not found"),
        (401, b"", AuthenticationError, "set PROLIFIC_TOKEN to a valid API token"),
        (403, b"", PermissionDeniedError, "refused access"),
        (
            400,
            b'{"error": {"status": 400, "error_code": 1, "title": "Bad", "detail": {"name": ["blank"]}, '
            b'"traceback": "File secret.py INTERNAL"}}',
            BadRequestError,
            "name: blank",
        ),
    ],
)
async def test_client_errors_are_not_retried(
    clock: FakeClock, status: int, body: bytes, error: type[Exception], text: str
) -> None:
    with anyio.fail_after(10):
        async with serve(respond_json(status, body)) as server, make(server.url, clock) as client:
            with pytest.raises(error) as info:
                await client.get_dataset(DS)
    assert len(server.connections) == 1
    assert text in str(info.value)
    assert "INTERNAL" not in str(info.value)
    assert_exception_clean(info.value)


@pytest.mark.anyio
async def test_connect_errors_are_retried_then_reported(clock: FakeClock) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    with anyio.fail_after(10):
        async with make(f"http://127.0.0.1:{port}", clock) as client:
            with pytest.raises(ApiUnreachableError, match="could not connect") as info:
                await client.get_me()
            assert info.value.attempts == 5 and len(clock.waits) == 4
            clock.waits.clear()
            # A create that surely never left is retried too: no ambiguity.
            with pytest.raises(ApiUnreachableError, match="could not connect"):
                await client.create_dataset("n", WS, None)
            assert len(clock.waits) == 4
            clock.waits.clear()
            with pytest.raises(ApiUnreachableError):
                await client.get_upload_url(DS, "a.jsonl")
            assert len(clock.waits) == 1  # the upload-url GET is retried at most once


@pytest.mark.anyio
async def test_read_timeouts_on_reads_are_retried(clock: FakeClock) -> None:
    timeout = httpx2.Timeout(5.0, read=0.2)
    with anyio.fail_after(10):
        async with (
            serve(stall_after_request(), respond_json(200, dataset_body())) as server,
            make(server.url, clock, timeout=timeout) as client,
        ):
            assert (await client.get_dataset(DS)).id == DS
    assert len(server.connections) == 2


@pytest.mark.anyio
async def test_malformed_and_incomplete_answers(clock: FakeClock) -> None:
    with anyio.fail_after(10):
        async with (
            serve(
                respond_json(200, b"{not json"),
                respond_json(200, b'{"name": "no id"}'),
                respond_json(201, orjson.dumps({"upload_url": "https://s3.example/k", "http_method": "PUT"})),
                respond_json(201, orjson.dumps({"import_id": IMP})),
                respond_json(200, b'"a string"'),
            ) as server,
            make(server.url, clock) as client,
        ):
            with pytest.raises(UnexpectedResponseError, match="not JSON"):
                await client.get_dataset(DS)
            with pytest.raises(UnexpectedResponseError, match="'id' missing"):
                await client.get_dataset(DS)
            with pytest.raises(UnexpectedResponseError, match="has no import_id"):
                await client.get_upload_url(DS, "a.jsonl")
            with pytest.raises(UnexpectedResponseError, match="has no upload_url"):
                await client.get_upload_url(DS, "a.jsonl")
            with pytest.raises(UnexpectedResponseError, match="not an object"):
                await client.append_datapoints(DS, b'{"a": 1}\n')
    assert len(server.connections) == 5


@pytest.mark.anyio
async def test_huge_error_bodies_are_read_bounded(clock: FakeClock) -> None:
    huge = b"<html>" + b"x" * (10 * 1024 * 1024) + b"</html>"
    with anyio.fail_after(20):
        async with (
            serve(respond(403, huge, {"Content-Type": "text/html"})) as server,
            make(server.url, clock) as client,
        ):
            with pytest.raises(PermissionDeniedError, match=r"\(HTTP 403\)\. The token"):
                await client.get_dataset(DS)
        async with (
            serve(respond(403, huge, {"Content-Type": "text/html"})) as server,
            make(server.url, clock) as client,
        ):
            with pytest.raises(UploadRejectedError, match="HTTP 403"):
                await client.put_file(target_for(server.url), io.BytesIO(b"{}\n"), size=3)


@pytest.mark.anyio
async def test_api_redirect_is_not_followed(clock: FakeClock) -> None:
    with anyio.fail_after(10):
        async with (
            serve(respond(200)) as elsewhere,
            serve(respond(302, headers={"Location": f"{elsewhere.url}/steal"})) as server,
            make(server.url, clock) as client,
        ):
            with pytest.raises(RedirectRefusedError, match="not followed"):
                await client.get_dataset(DS)
    assert elsewhere.connections == []
    assert len(server.connections) == 1


# --- writes that must not be repeated blindly --------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("first", [drop(), respond_json(500, b"")], ids=["dropped", "500"])
async def test_create_after_sending_is_ambiguous_and_not_retried(clock: FakeClock, first: Handler) -> None:
    schema = DatasetSchema(strict=True, fields={"text": SchemaField(type="text", label="Text")})
    with anyio.fail_after(10):
        async with serve(first, respond_json(201, dataset_body())) as server, make(server.url, clock) as client:
            with pytest.raises(AmbiguousCreateError) as info:
                await client.create_dataset("Reviews", WS, schema)
    (conn,) = server.connections
    assert conn.head == f"POST {DATASETS} HTTP/1.1"
    assert orjson.loads(conn.body) == {
        "name": "Reviews",
        "workspace_id": WS,
        "schema": {"strict": True, "fields": {"text": {"type": "text", "label": "Text"}}},
    }
    message = str(info.value)
    assert message.startswith("the dataset may have been created ('Reviews', ")
    assert message.endswith("Check before creating it again")
    assert clock.waits == []


@pytest.mark.anyio
async def test_create_rate_limited_is_definite(clock: FakeClock) -> None:
    with anyio.fail_after(10):
        async with (
            serve(respond_json(429, b"", {"Retry-After": "2"}), respond_json(201, dataset_body())) as server,
            make(server.url, clock) as client,
        ):
            with pytest.raises(RateLimitedError, match="retry after 2 s"):
                await client.create_dataset("Reviews", WS, None)
    assert len(server.connections) == 1


@pytest.mark.anyio
async def test_create_v3_and_patch_schema(clock: FakeClock) -> None:
    schema = DatasetSchema(strict=False, fields={"a": SchemaField(type="text")})
    with anyio.fail_after(10):
        async with (
            serve(
                respond_json(
                    201, orjson.dumps({"id": DS, "name": "Old", "schema_version": "3", "status": "UNINITIALISED"})
                ),
                respond_json(200, dataset_body(migration_job_id="job-1")),
                respond_json(200, dataset_body()),
                drop(),
            ) as server,
            make(server.url, clock) as client,
        ):
            v3 = await client.create_dataset("Old", WS, DatasetSchema(strict=True))  # no fields: no schema key
            assert v3.schema_version == 3 and v3.status == "UNINITIALISED" and not v3.is_v4
            update = await client.update_schema(DS, schema)
            assert update.migration_job_id == "job-1" and update.dataset.id == DS
            first = await client.update_schema(DS, schema)
            assert first.migration_job_id is None
            with pytest.raises(AmbiguousSchemaUpdateError, match=r"may have been applied.*before sending"):
                await client.update_schema(DS, schema)
    assert orjson.loads(server.connections[0].body) == {"name": "Old", "workspace_id": WS}
    assert server.connections[1].head == f"PATCH {DATASETS}/{DS} HTTP/1.1"
    assert orjson.loads(server.connections[1].body) == {"schema": {"strict": False, "fields": {"a": {"type": "text"}}}}
    assert len(server.connections) == 4


@pytest.mark.anyio
async def test_tolerated_answers_missing_ids_null_method_and_empty_bodies(clock: FakeClock) -> None:
    """What Prolific's CLI copes with, we cope with (docs/prolific-api.md, What Prolific's CLI and OpenAPI add): an
    import answer without its ids takes them from the request; `http_method: null` means PUT; a 2xx without a body
    (a 204) to a schema update is success, and the dataset is read again; so is one carrying only the migration id.
    """
    schema = DatasetSchema(strict=False, fields={"a": SchemaField(type="text")})
    with anyio.fail_after(10):
        async with (
            serve(
                respond_json(200, orjson.dumps({"status": "complete", "accepted_count": 2})),
                respond_json(200, orjson.dumps({"import_id": None, "dataset_id": "", "status": "processing"})),
                respond_json(
                    201, orjson.dumps({"upload_url": "https://s3.example/k", "http_method": None, "import_id": IMP})
                ),
                respond_json(201, orjson.dumps({"upload_url": "https://s3.example/k", "import_id": IMP})),
                respond(204, b"", {}),
                respond_json(200, dataset_body(schema={"strict": False, "fields": {"a": {"type": "text"}}})),
                respond_json(200, orjson.dumps({"migration_job_id": "job-9"})),
                respond_json(200, dataset_body()),
                respond(200, b"", {"Content-Type": "application/json"}),
            ) as server,
            make(server.url, clock) as client,
        ):
            job = await client.get_import(DS, IMP)
            assert (job.import_id, job.dataset_id, job.status, job.accepted_count) == (IMP, DS, "complete", 2)
            running = await client.get_import(DS, IMP)
            assert (running.import_id, running.dataset_id, running.is_terminal) == (IMP, DS, False)
            for _ in range(2):
                target = await client.get_upload_url(DS, "a.jsonl")
                assert (target.http_method, target.import_id) == ("PUT", IMP)
            empty = await client.update_schema(DS, schema)
            assert empty.answer_empty and empty.migration_job_id is None
            assert empty.dataset.dataset_schema is not None and list(empty.dataset.dataset_schema.fields) == ["a"]
            bare = await client.update_schema(DS, schema)
            assert (bare.migration_job_id, bare.answer_empty, bare.dataset.id) == ("job-9", False, DS)
            with pytest.raises(UnexpectedResponseError, match=r"answer for dataset .* is empty"):
                await client.get_dataset(DS)  # an empty body where a dataset is due is still an error
    heads = [c.head.split(" ")[0] + " " + c.target for c in server.connections]
    assert heads[4:8] == [
        f"PATCH {DATASETS}/{DS}",
        f"GET {DATASETS}/{DS}",
        f"PATCH {DATASETS}/{DS}",
        f"GET {DATASETS}/{DS}",
    ]


@pytest.mark.anyio
async def test_ambiguous_upload_url_reports_the_orphan(clock: FakeClock) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    imports = [
        {"import_id": "imp-new", "status": "uninitialised", "filename": "data.jsonl", "created_at": now.isoformat()},
        {"import_id": "imp-other", "status": "uninitialised", "filename": "other.jsonl"},
        {"import_id": "imp-stale", "status": "uninitialised", "created_at": (now - timedelta(days=2)).isoformat()},
        {"import_id": "imp-done", "status": "complete", "filename": "data.jsonl"},
    ]
    with anyio.fail_after(10):
        async with (
            serve(drop(), respond_json(200, dataset_body(imports=imports))) as server,
            make(server.url, clock) as client,
        ):
            with pytest.raises(AmbiguousUploadUrlError) as info:
                await client.get_upload_url(DS, "data.jsonl")
    assert info.value.orphan_import_ids == ("imp-new",)
    assert "imp-new" in str(info.value)
    heads = [c.head for c in server.connections]
    assert heads == [f"GET {DATASETS}/{DS}/upload-url/data.jsonl HTTP/1.1", f"GET {DATASETS}/{DS} HTTP/1.1"]


@pytest.mark.anyio
async def test_upload_url_is_one_encoded_segment_and_content_type_falls_back(clock: FakeClock) -> None:
    body = orjson.dumps({"upload_url": "https://s3.example/k", "http_method": "PUT", "import_id": IMP})
    with anyio.fail_after(10):
        async with (
            serve(respond_json(201, body), respond_json(201, orjson.dumps({"url": "https://s3.example/k"}))) as srv,
            make(srv.url, clock) as client,
        ):
            target = await client.get_upload_url(DS, "a/../../workspaces?x=1 100%.csv")
            v3 = await client.get_upload_url(DS, "legacy.csv", expect_import_id=False)
    assert srv.connections[0].target == f"{DATASETS}/{DS}/upload-url/workspaces%3Fx%3D1%20100%25.csv"
    assert target.content_type == "text/csv" and target.content_type_inferred
    assert target.filename == "workspaces?x=1 100%.csv" and target.import_id == IMP
    assert v3.import_id is None and v3.upload_url == "https://s3.example/k"


@pytest.mark.anyio
async def test_append_sends_ndjson_and_says_it_was_retried(clock: FakeClock) -> None:
    ok = orjson.dumps({"accepted_count": 2, "rejected_count": 0, "duplicate_count": 1, "errors": []})
    with anyio.fail_after(10):
        async with (
            serve(
                respond_json(503, b""),
                respond_json(200, ok),
                respond_json(409, b'{"error": {"title": "Conflict", "detail": "import in progress"}}'),
            ) as server,
            make(server.url, clock) as client,
        ):
            result = await client.append_datapoints(DS, '{"a":1}\n{"a":"é"}\n'.encode())
            assert result.retried and result.attempts == 2 and result.duplicate_count == 1
            with pytest.raises(ConflictError, match=r"import in progress.*wait for it to finish"):
                await client.append_datapoints(DS, b'{"a": 1}\n')
    second = server.connections[1]
    assert second.head == f"POST {DATASETS}/{DS}/datapoints HTTP/1.1"
    assert second.headers["content-type"] == "application/x-ndjson"
    assert second.body == '{"a":1}\n{"a":"é"}\n'.encode()
    assert len(server.connections) == 3  # 409 not retried


@pytest.mark.anyio
async def test_pagination_follows_meta_count_and_links_next(clock: FakeClock) -> None:
    pages = [
        {"results": [{"id": "w1", "title": "A"}, {"id": "w2", "title": "B"}], "meta": {"count": 3}},
        {"results": [{"id": "w3", "title": "C"}], "meta": {"count": 3}},
        {"results": [{"id": "b1", "datasets": [{"id": "d1"}]}], "links": {"next": "https://api/x?offset=1"}},
        {"results": [{"id": "b2", "dataset_id": "d2"}], "links": {"next": None}},
        [{"id": "b3"}],
        {"results": [{"id": "w1"}], "meta": {"count": 50}},
        {"results": [{"id": "w1"}], "meta": {"count": 50}},
    ]
    with anyio.fail_after(10):
        async with (
            serve(*(respond_json(200, orjson.dumps(p)) for p in pages)) as server,
            make(server.url, clock) as client,
        ):
            assert [w.id for w in await client.list_workspaces()] == ["w1", "w2", "w3"]
            batches = await client.list_batches(WS)
            assert [b.id for b in batches] == ["b1", "b2"]
            assert [b.dataset_ids for b in batches] == [["d1"], ["d2"]]
            assert [b.id for b in await client.list_batches(WS)] == ["b3"]
            assert [w.id for w in await client.list_workspaces()] == ["w1"]  # a server ignoring offset
    targets = [c.target for c in server.connections]
    assert targets[:2] == ["/api/v1/workspaces/?limit=100&offset=0", "/api/v1/workspaces/?limit=100&offset=2"]
    assert targets[2:4] == [
        f"/api/v1/data-collection/batches?workspace_id={WS}&limit=100&offset=0",
        f"/api/v1/data-collection/batches?workspace_id={WS}&limit=100&offset=1",
    ]
    assert len(targets) == 7


@pytest.mark.anyio
async def test_pagination_follows_links_next_href_objects(clock: FakeClock) -> None:
    """Prolific's list shape: `_links.next.href` (an absolute URL on the API origin, null at the end) is followed as
    given; a link to another origin is never followed (the token stays with the API: offset is stepped on the API
    origin instead), and a link back to a page already read ends the walk."""
    ws = "/api/v1/workspaces/"
    origin: list[str] = []

    def page(ids: list[str], href: str | None) -> bytes:
        return orjson.dumps(
            {
                "results": [{"id": i, "title": i.upper()} for i in ids],
                "meta": {"count": 9},
                "_links": {"self": {"href": None}, "next": {"href": href}, "previous": {"href": None}},
            }
        )

    def absolute(ids: list[str], path_and_query: str) -> Handler:
        """A page whose next link is absolute on the server's own origin (known once it runs)."""

        async def handler(stream: anyio.abc.SocketStream, conn: Conn) -> None:
            await respond_json(200, page(ids, origin[0] + path_and_query))(stream, conn)

        return handler

    with anyio.fail_after(10):
        async with serve(
            absolute(["w1", "w2"], f"{ws}?limit=2&offset=2&cursor=abc"),
            respond_json(200, page(["w3"], f"{ws}?limit=2&offset=3")),
            respond_json(200, page(["w4"], None)),
            respond_json(200, page(["x1"], "https://elsewhere.example/api/v1/workspaces/?offset=1")),
            respond_json(200, page(["x2"], None)),
            respond_json(200, page(["y1"], f"{ws}?limit=100&offset=0")),
        ) as server:
            origin.append(server.url)
            async with make(server.url, clock) as client:
                assert [w.id for w in await client.list_workspaces()] == ["w1", "w2", "w3", "w4"]
                assert [w.id for w in await client.list_workspaces()] == ["x1", "x2"]
                assert [w.id for w in await client.list_workspaces()] == ["y1"]
    assert [c.target for c in server.connections] == [
        f"{ws}?limit=100&offset=0",
        f"{ws}?limit=2&offset=2&cursor=abc",
        f"{ws}?limit=2&offset=3",
        f"{ws}?limit=100&offset=0",
        f"{ws}?limit=100&offset=1",
        f"{ws}?limit=100&offset=0",
    ]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the presigned PUT -------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_put_streams_with_fixed_length_and_only_the_signed_content_type(clock: FakeClock, tmp_path: Path) -> None:
    path, data = write_file(tmp_path, 3 * 1024 * 1024 + 5)
    progress: list[tuple[int, int]] = []

    async def on_progress(sent: int, total: int) -> None:
        progress.append((sent, total))

    with anyio.fail_after(10):
        async with (
            serve(respond(200, headers={"ETag": '"etag-1"'})) as server,
            make(server.url, clock) as client,
        ):
            result = await client.put_file(target_for(server.url), path, size=len(data), on_progress=on_progress)
    (conn,) = server.connections
    assert conn.method == "PUT" and conn.body == data
    assert conn.headers["content-length"] == str(len(data))
    assert conn.headers["content-type"] == "application/x-ndjson"
    assert "transfer-encoding" not in conn.headers
    assert "authorization" not in conn.headers and "user-agent" not in conn.headers
    assert f"X-Amz-Signature={SIGNATURE}" in conn.target  # the URL is used exactly as returned
    assert (result.status_code, result.bytes_sent, result.attempts, result.etag) == (200, len(data), 1, '"etag-1"')
    assert [s for s, _ in progress] == [1 << 20, 2 << 20, 3 << 20, len(data)]
    assert {t for _, t in progress} == {len(data)}


@pytest.mark.anyio
async def test_put_from_descriptor_or_file_object_keeps_them_open(clock: FakeClock, tmp_path: Path) -> None:
    path, data = write_file(tmp_path, 200_000)
    fd = os.open(path, os.O_RDONLY)
    try:
        with anyio.fail_after(10):
            async with serve(respond(200)) as server, make(server.url, clock) as client:
                await client.put_file(target_for(server.url), fd, size=len(data), chunk_size=65536)
                with path.open("rb") as handle:
                    await client.put_file(target_for(server.url), handle, size=len(data))
                    assert not handle.closed
                await client.put_file(target_for(server.url), io.BytesIO(data), size=len(data), content_type="text/csv")
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # pread: the caller's offset is untouched
    finally:
        os.close(fd)
    assert [c.body for c in server.connections] == [data, data, data]
    assert server.connections[2].headers["content-type"] == "text/csv"


@pytest.mark.anyio
async def test_put_reads_the_next_chunk_while_this_one_waits_to_go_out(clock: FakeClock) -> None:
    """The read (and hash) of chunk N+1 begins before chunk N goes out, so the PUT takes the slower of reading and
    sending, not their sum (docs/performance.md, goal 1); the body is still the file, in order."""
    data = bytes(range(256)) * 4096 * 3 + b"tail"  # 3 MiB and 4 bytes: four chunks of 1 MiB
    reads: list[int] = []

    class Recording(io.BytesIO):  # no descriptor: read with seek + read, each seek recorded
        def seek(self, offset: int, whence: int = 0) -> int:
            reads.append(offset)
            return super().seek(offset, whence)

    ahead: list[int] = []

    async def pace(end: int, last: bool) -> None:
        if not last:
            with anyio.fail_after(5):  # the next read has begun, though this chunk has not gone out
                while end not in reads:
                    await anyio.sleep(0.001)
            ahead.append(end)

    with anyio.fail_after(20):
        async with serve(respond(200)) as server, make(server.url, clock) as client:
            await client.put_file(
                target_for(server.url), Recording(data), size=len(data), expected_sha256=sha256_hex(data), pace=pace
            )
    assert server.connections[0].body == data
    assert reads == [0, 1 << 20, 2 << 20, 3 << 20, len(data)]  # the last: one byte more, to see a grown file
    assert ahead == [1 << 20, 2 << 20, 3 << 20]


@pytest.mark.anyio
async def test_put_retries_from_byte_zero_after_reset_slowdown_and_500(clock: FakeClock, tmp_path: Path) -> None:
    path, data = write_file(tmp_path, 300_000)
    progress: list[int] = []
    with anyio.fail_after(10):
        async with (
            serve(
                reset_after(65536),
                respond_s3(503, "SlowDown", "Please reduce your request rate.", {"Retry-After": "2"}),
                respond_s3(500, "InternalError", "We encountered an internal error. Please try again."),
                respond(200),
            ) as server,
            make(server.url, clock) as client,
        ):
            result = await client.put_file(
                target_for(server.url),
                path,
                size=len(data),
                chunk_size=65536,
                on_progress=lambda sent, total: progress.append(sent),
            )
    assert result.attempts == 4 and result.retried
    assert len(server.connections) == 4
    assert len(server.connections[0].body) < len(data)
    assert [c.body == data for c in server.connections[1:]] == [True, True, True]
    assert clock.waits == [0.25, 2.0, 1.0]
    assert progress == sorted(set(progress)) and progress[-1] == len(data)


@pytest.mark.anyio
async def test_put_on_a_stalled_host_times_out_per_write_and_gives_up(clock: FakeClock, tmp_path: Path) -> None:
    path, data = write_file(tmp_path, 4 * 1024 * 1024)
    transport = httpx2.AsyncHTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)])
    timeout = httpx2.Timeout(5.0, write=0.2)
    with anyio.fail_after(20):
        async with (
            serve(stall(), rcvbuf=4096) as server,
            make(server.url, clock, timeout=timeout, transport=transport) as client,
        ):
            with pytest.raises(UploadFailedError, match="stalled") as info:
                await client.put_file(target_for(server.url), path, size=len(data))
    assert info.value.attempts == 5 and len(server.connections) == 5
    assert "nothing was imported" in str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("handler", "error", "text"),
    [
        (
            respond_s3(
                403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature"
            ),
            UploadSignatureMismatchError,
            "Likely cause: the Content-Type sent ('application/x-ndjson') differs from the signed one",
        ),
        (
            respond_s3(403, "AccessDenied", "Request has expired", Expires="2026-01-01T00:00:00Z"),
            UploadUrlExpiredError,
            "Request one new upload URL",
        ),
        (
            respond_s3(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", MaxSizeAllowed="10"
            ),
            UploadTooLargeError,
            "at most 10 bytes per upload",
        ),
        (respond_s3(400, "InvalidArgument", "Only one auth mechanism allowed"), UploadRejectedError, "InvalidArgument"),
        (
            respond_s3(411, "MissingContentLength", "You must provide the Content-Length HTTP header."),
            UploadRejectedError,
            "411",
        ),
        (
            respond_s3(
                501,
                "NotImplemented",
                "A header you provided implies functionality that is not implemented",
                Header="Transfer-Encoding",
            ),
            UploadRejectedError,
            "Transfer-Encoding",
        ),
        (respond(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"}), UploadFailedError, "HTTP 502"),
    ],
)
async def test_put_final_errors_are_not_retried(
    clock: FakeClock, tmp_path: Path, handler: Handler, error: type[Exception], text: str
) -> None:
    path, data = write_file(tmp_path, 1000)
    with anyio.fail_after(10):
        async with serve(handler, respond(200)) as server, make(server.url, clock) as client:
            with pytest.raises(error) as info:
                await client.put_file(target_for(server.url), path, size=len(data))
    assert len(server.connections) == 1
    assert text in str(info.value)
    assert_exception_clean(info.value)


@pytest.mark.anyio
async def test_put_redirect_is_not_followed(clock: FakeClock) -> None:
    with anyio.fail_after(10):
        async with serve(respond(200)) as elsewhere:
            location = f"{elsewhere.url}/other?X-Amz-Signature={SIGNATURE}"
            async with (
                serve(respond(307, headers={"Location": location})) as server,
                make(server.url, clock) as client,
            ):
                with pytest.raises(UploadRejectedError, match="redirect") as info:
                    await client.put_file(target_for(server.url), io.BytesIO(b"{}\n"), size=3)
    assert elsewhere.connections == [] and len(server.connections) == 1
    assert_exception_clean(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize("change", ["shrink", "grow"])
async def test_file_changed_during_upload_aborts_before_the_body_completes(
    clock: FakeClock, tmp_path: Path, change: str
) -> None:
    path, data = write_file(tmp_path, 300_000)

    def on_progress(sent: int, total: int) -> None:
        if sent == 65536:
            if change == "shrink":
                os.truncate(path, 100_000)
            else:
                with path.open("ab") as handle:
                    handle.write(b"more")

    with anyio.fail_after(10):
        async with (
            serve(read_request_then_ok()) as server,
            make(server.url, clock) as client,
        ):
            with pytest.raises(FileChangedError, match="the file changed during upload, nothing was imported"):
                await client.put_file(
                    target_for(server.url), path, size=len(data), chunk_size=65536, on_progress=on_progress
                )
            await server.connections[0].disconnected.wait()
    (conn,) = server.connections
    assert len(conn.body) < len(data)  # the server never got a complete body


def read_request_then_ok() -> Handler:
    async def handler(stream: anyio.abc.SocketStream, conn: Conn) -> None:
        await read_request(stream, conn)
        await stream.send(response_bytes(200))

    return handler


@pytest.mark.anyio
async def test_cancellation_aborts_the_put_promptly_and_closes_the_file(clock: FakeClock, tmp_path: Path) -> None:
    path, data = write_file(tmp_path, 4 * 1024 * 1024)
    resume = anyio.Event()
    first_chunk = anyio.Event()

    async def slow_reader(stream: anyio.abc.SocketStream, conn: Conn) -> None:
        conn.body = await read_head(stream, conn)
        await resume.wait()
        while chunk := await stream.receive():
            conn.body += chunk

    transport = httpx2.AsyncHTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)])
    progress: list[int] = []
    with anyio.fail_after(10):
        async with (
            serve(slow_reader, rcvbuf=4096) as server,
            make(server.url, clock, transport=transport) as client,
        ):
            async with anyio.create_task_group() as tg:

                async def upload() -> None:
                    def on_progress(sent: int, total: int) -> None:
                        progress.append(sent)
                        first_chunk.set()

                    await client.put_file(
                        target_for(server.url), path, size=len(data), chunk_size=65536, on_progress=on_progress
                    )

                tg.start_soon(upload)
                await first_chunk.wait()
                assert is_open(path)
                tg.cancel_scope.cancel()
            seen = len(progress)
            resume.set()
            await server.connections[0].disconnected.wait()
            assert not is_open(path)
    assert len(progress) == seen
    assert len(server.connections) == 1 and len(server.connections[0].body) < len(data)


@pytest.mark.anyio
async def test_unsafe_upload_url_sends_nothing(clock: FakeClock) -> None:
    with anyio.fail_after(10):
        async with serve(respond(200)) as server:
            port = server.port
            cases = [
                (False, f"http://127.0.0.1:{port}/k?X-Amz-Signature={SIGNATURE}"),
                (False, f"https://127.0.0.1:{port}/k?X-Amz-Signature={SIGNATURE}"),
                (True, f"http://user:pw@127.0.0.1:{port}/k?X-Amz-Signature={SIGNATURE}"),
                (True, f"file:///etc/passwd?X-Amz-Signature={SIGNATURE}"),
            ]
            for sandbox, url in cases:
                base = server.url if sandbox else "https://api.prolific.invalid"
                async with make(base, clock, sandbox=sandbox) as client:
                    target = UploadTarget.from_api(
                        {"upload_url": url, "import_id": IMP}, filename="a.jsonl", dataset_id=DS
                    )
                    with pytest.raises(UnsafeUploadUrlError, match="REDACTED") as info:
                        await client.put_file(target, io.BytesIO(b"{}\n"), size=3)
                    assert_exception_clean(info.value)
                    assert ":pw@" not in str(info.value)
    assert server.connections == []


@pytest.mark.anyio
async def test_put_memory_stays_flat_for_a_large_file(clock: FakeClock, tmp_path: Path) -> None:
    size = 32 * 1024 * 1024
    path = tmp_path / "big.jsonl"
    with path.open("wb") as handle:
        handle.truncate(size)  # sparse: costs no disk

    async def count_only(stream: anyio.abc.SocketStream, conn: Conn) -> None:
        received = len(await read_head(stream, conn))
        while received < size:
            received += len(await stream.receive())
        await stream.send(response_bytes(200))

    tracemalloc.start()
    try:
        with anyio.fail_after(30):
            async with serve(count_only) as server, make(server.url, clock) as client:
                await client.put_file(target_for(server.url), path, size=size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


# --- nothing secret in logs or errors ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_token_and_signature_never_reach_logs_or_errors(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx2", "httpcore2", "prolific_mcp"):
        caplog.set_level(logging.DEBUG, logger=name)
    path, data = write_file(tmp_path, 2000)
    errors: list[BaseException] = []
    token_echo = orjson.dumps({"error": {"title": "Unauthorized", "detail": f"bad token {SENTINEL}"}})
    with anyio.fail_after(10):
        async with (
            serve(
                respond_json(401, token_echo),
                respond_s3(403, "SignatureDoesNotMatch", f"sig {SIGNATURE}", SignatureProvided=SIGNATURE),
                respond_s3(503, "SlowDown", "slow"),
                respond(200),
                drop(),
                respond_json(200, dataset_body()),
            ) as server,
            make(server.url, clock) as client,
        ):
            for call in (
                lambda: client.get_me(),
                lambda: client.put_file(target_for(server.url), path, size=len(data)),
                lambda: client.get_upload_url(DS, "data.jsonl"),
            ):
                try:
                    await call()
                except Exception as exc:
                    errors.append(exc)
            await client.put_file(target_for(server.url), path, size=len(data))  # 503, then 200
    assert [type(e) for e in errors] == [AuthenticationError, UploadSignatureMismatchError, AmbiguousUploadUrlError]
    for error in errors:
        assert_exception_clean(error)
    assert "HTTP Request: PUT" in caplog.text and "X-Amz-Signature=REDACTED" in caplog.text  # the check can fail
    assert_no_leak(caplog.text)
    for record in caplog.records:
        assert_no_leak(record.getMessage())


@pytest.mark.anyio
async def test_unreadable_file_is_an_upload_error_before_sending(clock: FakeClock, tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)  # a directory: opens, but cannot be read
    try:
        with anyio.fail_after(10):
            async with serve(read_request_then_ok()) as server, make(server.url, clock) as client:
                with pytest.raises(UploadError, match="could not be opened for the upload") as opened:
                    await client.put_file(target_for(server.url), tmp_path / "missing.jsonl", size=10)
                with pytest.raises(UploadError, match="could not be read during the upload") as read:
                    await client.put_file(target_for(server.url), fd, size=10)
    finally:
        os.close(fd)
    assert "missing.jsonl" in str(opened.value) and "nothing was imported" in str(read.value)
    assert all(len(c.body) == 0 for c in server.connections)
