"""The client against the sandbox over loopback: every endpoint, every import status, fake S3's errors,
retries, the no-blind-retry rule and redaction.

One sandbox (fast pace, a 64 KiB object cap) serves the module; each test starts with no faults and an empty
request log, and fails if a fault it scripted was never used. The client's sleep and clock are fake.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx2
import orjson
import pytest

from prolific_mcp import USER_AGENT
from prolific_mcp.api import client as client_module
from prolific_mcp.api.client import ProlificClient
from prolific_mcp.api.errors import (
    AmbiguousCreateError,
    AmbiguousSchemaUpdateError,
    AmbiguousUploadUrlError,
    BadRequestError,
    NotFoundError,
    RedirectRefusedError,
    UploadRejectedError,
    UploadSignatureMismatchError,
    UploadTooLargeError,
    UploadUrlExpiredError,
)
from prolific_mcp.api.models import DatasetSchema, ImportJob, SchemaField, UploadTarget
from prolific_mcp.api.paths import DATASETS
from prolific_mcp.api.s3 import check_fixed_length, upload_failure
from prolific_mcp.sandbox import RequestRecord, Sandbox

from .conftest import SENTINEL, FakeClock, assert_exception_clean, assert_no_leak, exception_texts, respond, serve

MAX_OBJECT = 64 * 1024
SCHEMA = DatasetSchema(
    strict=True,
    fields={"text": SchemaField(type="text", label="Text"), "source": SchemaField(type="metadata")},
)
GOOD = b'{"text": "a", "source": "web"}\n{"text": "b", "source": "app"}\n'


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox.start(state_dir=tmp_path_factory.mktemp("sandbox"), pace="fast", max_object_size=MAX_OBJECT) as sbx:
        yield sbx


@pytest.fixture
def sbx(shared_sandbox: Sandbox) -> Iterator[Sandbox]:
    shared_sandbox.faults.clear()
    shared_sandbox.requests.clear()
    yield shared_sandbox
    unused = shared_sandbox.faults.unused()
    shared_sandbox.faults.clear()
    assert not unused, f"scripted faults never used: {[r.match for r in unused]}"


def client_for(sbx: Sandbox, clock: FakeClock, **kwargs: Any) -> ProlificClient:
    return ProlificClient(sbx.url, SENTINEL, sandbox=True, sleep=clock.sleep, clock=clock, random=lambda: 0.5, **kwargs)


def sent(sbx: Sandbox, method: str, server: str = "api", contains: str = "") -> list[RequestRecord]:
    return [r for r in list(sbx.requests) if r.method == method and r.server == server and contains in r.path]


async def wait_terminal(client: ProlificClient, dataset_id: str, import_id: str) -> tuple[ImportJob, list[str]]:
    """Poll the import until it is terminal (bounded by the caller's fail_after); return it and the statuses seen."""
    seen: list[str] = []
    while True:
        job = await client.get_import(dataset_id, import_id)
        if not seen or seen[-1] != job.status:
            seen.append(job.status)
        if job.is_terminal:
            return job, seen
        await anyio.sleep(0.01)  # yield to the sandbox's thread; correctness does not depend on the duration


async def upload(client: ProlificClient, tmp_path: Path, dataset_id: str, data: bytes, name: str = "data.jsonl") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    target = await client.get_upload_url(dataset_id, name)
    assert target.import_id is not None
    await client.put_file(target, path, size=len(data))
    return target.import_id


# --- every endpoint ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_endpoint(sbx: Sandbox, clock: FakeClock, tmp_path: Path) -> None:
    sbx.seed_workspace("Second")
    with anyio.fail_after(30):
        async with client_for(sbx, clock) as client:
            me = await client.get_me()
            assert me.id == sbx.user_id
            workspaces = await client.list_workspaces()
            assert sbx.workspace_id in [w.id for w in workspaces] and len(workspaces) >= 2

            dataset = await client.create_dataset("Reviews", sbx.workspace_id, SCHEMA)
            assert dataset.is_v4 and dataset.schema_version == 4 and dataset.dataset_schema == SCHEMA

            import_id = await upload(client, tmp_path, dataset.id, GOOD)
            job, _ = await wait_terminal(client, dataset.id, import_id)
            assert (job.status, job.accepted_count) == ("complete", 2)

            appended = await client.append_datapoints(dataset.id, b'{"text": "c", "source": "api"}\n')
            assert appended.accepted_count == 1 and not appended.retried

            wider = DatasetSchema(strict=False, fields={**SCHEMA.fields, "extra": SchemaField(type="metadata")})
            update = await client.update_schema(dataset.id, wider)
            assert update.migration_job_id is not None and update.dataset.id == dataset.id
            migration = await client.get_migration(dataset.id, update.migration_job_id)
            while not migration.is_terminal:
                await anyio.sleep(0.01)
                migration = await client.get_migration(dataset.id, update.migration_job_id)
            assert migration.status == "complete"

            view = await client.get_dataset(dataset.id)
            assert view.total_datapoint_count == 3 and [j.import_id for j in view.imports or []] == [import_id]

            unset = await client.create_dataset("No schema yet", sbx.workspace_id, None)
            assert (unset.schema_version, unset.dataset_schema, unset.imports) == (4, None, [])

            assert sbx.legacy_workspace_id in [w.id for w in workspaces]
            legacy = await client.create_dataset("Legacy", sbx.legacy_workspace_id, None)
            assert legacy.schema_version == 3 and legacy.status == "UNINITIALISED" and not legacy.is_v4
            v3 = await client.get_upload_url(legacy.id, "legacy.csv", expect_import_id=False)
            assert v3.content_type == "text/csv"
            csv = b"id,text,META_TASK_GROUP_ID\n1,hello,g1\n2,world,g1\n"
            (tmp_path / "legacy.csv").write_bytes(csv)
            await client.put_file(v3, tmp_path / "legacy.csv", size=len(csv))
            status = await client.get_dataset_status(legacy.id)
            while not status.is_terminal:
                await anyio.sleep(0.01)
                status = await client.get_dataset_status(legacy.id)
            assert status.status == "READY"

            sbx.seed_batch(sbx.workspace_id, dataset.id)
            batches = await client.list_batches(sbx.workspace_id)
            assert any(dataset.id in b.dataset_ids for b in batches)

    for record in sbx.requests:
        if record.server == "api":
            assert record.headers["authorization"] == f"Token {SENTINEL}"
            assert record.headers["user-agent"] == USER_AGENT
        else:
            assert "authorization" not in record.headers and "user-agent" not in record.headers
            assert record.status == 200
    assert len(sent(sbx, "PUT", "s3")) == 2


# --- every import status -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_import_status(sbx: Sandbox, clock: FakeClock, tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Statuses", sbx.workspace_id, SCHEMA)

            complete, _ = await wait_terminal(client, dataset.id, await upload(client, tmp_path, dataset.id, GOOD))
            assert complete.status == "complete"

            partial_data = GOOD + b'{"source": "no text"}\n{not json\n'
            partial, _ = await wait_terminal(
                client, dataset.id, await upload(client, tmp_path, dataset.id, partial_data, "p.jsonl")
            )
            assert (partial.status, partial.accepted_count, partial.rejected_count) == ("partial", 2, 2)
            assert {(e.record_index, e.field) for e in partial.errors} == {(2, None), (3, "_raw")}
            assert partial.duplicate_count == 2  # the two good records were there already

            failed, _ = await wait_terminal(
                client, dataset.id, await upload(client, tmp_path, dataset.id, b'[{"text": "x"}]\n', "f.jsonl")
            )
            assert failed.status == "failed" and failed.reason

            empty = await client.create_dataset("No schema yet", sbx.workspace_id, DatasetSchema(strict=False))
            assert empty.is_v4 and empty.dataset_schema is None  # an empty schema is not sent: the workspace's V4
            parked_id = await upload(client, tmp_path, empty.id, GOOD, "parked.jsonl")
            parked, _ = await wait_terminal(client, empty.id, parked_id)
            assert parked.status == "pending_schema" and parked.is_terminal

            first = await client.update_schema(empty.id, SCHEMA)
            assert first.migration_job_id is None  # the first schema: no migration, parked imports released
            released = await client.get_import(empty.id, parked_id)
            while released.status == "pending_schema" or not released.is_terminal:  # released, then imported
                await anyio.sleep(0.01)
                released = await client.get_import(empty.id, parked_id)
            assert released.status == "complete"


@pytest.mark.anyio
async def test_two_uploads_run_one_at_a_time(tmp_path: Path, clock: FakeClock) -> None:
    with Sandbox.start(state_dir=tmp_path / "paced", pace="default") as paced:
        with anyio.fail_after(30):
            async with client_for(paced, clock) as client:
                dataset = await client.create_dataset("Queue", paced.workspace_id, SCHEMA)
                first = await upload(client, tmp_path, dataset.id, GOOD, "one.jsonl")
                second = await upload(client, tmp_path, dataset.id, GOOD.replace(b'"a"', b'"z"'), "two.jsonl")
                assert first != second
                seen: dict[str, list[str]] = {first: [], second: []}
                while True:  # watch both at once: the second waits in `queued` while the first runs
                    jobs = [await client.get_import(dataset.id, import_id) for import_id in (first, second)]
                    for job in jobs:
                        if not seen[job.import_id] or seen[job.import_id][-1] != job.status:
                            seen[job.import_id].append(job.status)
                    if all(job.is_terminal for job in jobs):
                        break
                    await anyio.sleep(0.01)
    assert seen[first] == ["queued", "processing", "complete"] or seen[first] == ["processing", "complete"]
    assert seen[second][0] == "queued" and seen[second][-1] == "complete"
    assert seen[second].index("processing") > 0 and "processing" in seen[first]


# --- fake S3's errors --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_signature_mismatch_is_not_retried(sbx: Sandbox, clock: FakeClock, tmp_path: Path) -> None:
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Sig", sbx.workspace_id, SCHEMA)
            target = await client.get_upload_url(dataset.id, "data.jsonl")
            with pytest.raises(UploadSignatureMismatchError, match="Likely cause: the Content-Type sent") as info:
                await client.put_file(target, _file(tmp_path, GOOD), size=len(GOOD), content_type="text/plain")
    assert len(sent(sbx, "PUT", "s3")) == 1 and clock.waits == []
    assert_exception_clean(info.value)
    assert _signature(target) not in " ".join(exception_texts(info.value))


@pytest.mark.anyio
async def test_an_expired_url_is_refused_and_a_fresh_one_works(sbx: Sandbox, clock: FakeClock, tmp_path: Path) -> None:
    path = _file(tmp_path, GOOD)
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Expiry", sbx.workspace_id, SCHEMA)
            target = await client.get_upload_url(dataset.id, "data.jsonl")
            sbx.clock.advance(sbx.config.url_lifetime + 5)
            with pytest.raises(UploadUrlExpiredError, match="Request one new upload URL"):
                await client.put_file(target, path, size=len(GOOD))
            assert len(sent(sbx, "PUT", "s3")) == 1

            fresh = await client.get_upload_url(dataset.id, "data.jsonl")
            await client.put_file(fresh, path, size=len(GOOD))
            job, _ = await wait_terminal(client, dataset.id, fresh.import_id or "")
            assert job.status == "complete"
            orphans = [
                j.import_id for j in (await client.get_dataset(dataset.id)).imports or [] if j.status == "uninitialised"
            ]
            assert orphans == [target.import_id]


@pytest.mark.anyio
async def test_entity_too_large_is_not_retried(sbx: Sandbox, clock: FakeClock, tmp_path: Path) -> None:
    big = b'{"text": "' + b"x" * MAX_OBJECT + b'", "source": "s"}\n'
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Big", sbx.workspace_id, SCHEMA)
            target = await client.get_upload_url(dataset.id, "big.jsonl")
            with pytest.raises(UploadTooLargeError, match="Split it into smaller files"):
                await client.put_file(target, _file(tmp_path, big), size=len(big))
    assert len(sent(sbx, "PUT", "s3")) == 1


async def raw_put(url: str, headers: dict[str, str]) -> tuple[int, httpx2.Headers, bytes]:
    """Send only a PUT's head over a plain socket and read the answer (S3 refuses before reading a body)."""
    parts = urlsplit(url)
    head = f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    async with await anyio.connect_tcp(parts.hostname or "", parts.port or 80) as stream:
        await stream.send(head.encode())
        data = b""
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                data += await stream.receive()
    status_line, _, rest = data.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    fields = [line.split(b":", 1) for line in header_block.split(b"\r\n") if b":" in line]
    return int(status_line.split()[1]), httpx2.Headers([(k.strip(), v.strip()) for k, v in fields]), body


@pytest.mark.anyio
async def test_malformed_puts_our_client_never_sends(sbx: Sandbox, clock: FakeClock) -> None:
    """S3's answers to a PUT with Authorization, a chunked one, one without a length; and our own guard."""
    ctype = "application/x-ndjson"
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Raw", sbx.workspace_id, SCHEMA)
            targets = [await client.get_upload_url(dataset.id, f"r{i}.jsonl") for i in range(3)]
        answers = [
            await raw_put(
                targets[0].upload_url, {"Content-Type": ctype, "Content-Length": "10", "Authorization": "Token x"}
            ),
            await raw_put(targets[1].upload_url, {"Content-Type": ctype, "Transfer-Encoding": "chunked"}),
            await raw_put(targets[2].upload_url, {"Content-Type": ctype}),
        ]

    async def chunks() -> AsyncIterator[bytes]:
        yield GOOD

    async with httpx2.AsyncClient(trust_env=False) as raw:
        chunked = raw.build_request("PUT", targets[1].upload_url, content=chunks(), headers={"Content-Type": ctype})
        with pytest.raises(UploadRejectedError, match="without a fixed Content-Length"):
            check_fixed_length(chunked, len(GOOD))  # our guard refuses such a request before sending it
    expectations = [(400, "InvalidArgument"), (501, "Transfer-Encoding"), (411, "411 MissingContentLength")]
    for (status, headers, body), (expected, text), target in zip(answers, expectations, targets, strict=True):
        assert status == expected
        failure = upload_failure(status, body, headers, target=target, content_type=ctype)
        assert isinstance(failure.error, UploadRejectedError)
        assert text in str(failure.error)
        assert_exception_clean(failure.error)
    assert [r.status for r in sent(sbx, "PUT", "s3")] == [400, 501, 411]


# --- retries -----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_retries_with_backoff(sbx: Sandbox, clock: FakeClock, tmp_path: Path) -> None:
    path = _file(tmp_path, GOOD)
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Retry", sbx.workspace_id, SCHEMA)
            sbx.faults.add(f"GET /api/v1/data-collection/datasets/{dataset.id}", status=503, times=2, retry_after="1")
            assert (await client.get_dataset(dataset.id)).id == dataset.id
            assert len(sent(sbx, "GET", contains=dataset.id)) == 3
            assert clock.waits == [1.0, 1.0]

            clock.waits.clear()
            target = await client.get_upload_url(dataset.id, "data.jsonl")
            sbx.faults.add("PUT *", status=503, xml_code="SlowDown", times=1)
            sbx.faults.add("PUT *", action="drop", after_bytes=10, times=1)
            sbx.faults.add("PUT *", status=500, xml_code="InternalError", times=1)
            result = await client.put_file(target, path, size=len(GOOD))
            assert result.attempts == 4
            puts = sent(sbx, "PUT", "s3")
            assert len(puts) == 4 and [p.status for p in puts][-1] == 200
            assert puts[-1].body_size == len(GOOD)
            assert len(clock.waits) == 3
            job, _ = await wait_terminal(client, dataset.id, target.import_id or "")
            assert job.status == "complete"

            sbx.faults.add(f"POST /api/v1/data-collection/datasets/{dataset.id}/datapoints", status=502, times=1)
            appended = await client.append_datapoints(dataset.id, b'{"text": "r", "source": "s"}\n')
            assert appended.retried and appended.accepted_count == 1
            assert len(sent(sbx, "POST", contains="/datapoints")) == 2


@pytest.mark.anyio
async def test_a_stalled_read_is_retried(sbx: Sandbox, clock: FakeClock) -> None:
    timeout = httpx2.Timeout(5.0, read=0.3)
    with anyio.fail_after(20):
        async with client_for(sbx, clock, timeout=timeout) as client:
            dataset = await client.create_dataset("Stall", sbx.workspace_id, SCHEMA)
            sbx.faults.add(f"GET /api/v1/data-collection/datasets/{dataset.id}", action="stall", seconds=2, times=1)
            assert (await client.get_dataset(dataset.id)).id == dataset.id
    assert len(sent(sbx, "GET", contains=dataset.id)) == 2


# --- no blind retries --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_create_that_fails_after_sending_is_sent_once(sbx: Sandbox, clock: FakeClock) -> None:
    sbx.faults.add("POST /api/v1/data-collection/datasets", action="drop", when="after", times=1)
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            with pytest.raises(AmbiguousCreateError, match=r"may have been created \('Once', "):
                await client.create_dataset("Once", sbx.workspace_id, SCHEMA)
    assert len(sent(sbx, "POST")) == 1 and clock.waits == []


@pytest.mark.anyio
async def test_schema_change_that_fails_after_sending_is_sent_once(sbx: Sandbox, clock: FakeClock) -> None:
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Patch", sbx.workspace_id, SCHEMA)
            sbx.faults.add(f"PATCH /api/v1/data-collection/datasets/{dataset.id}", status=503, when="after", times=1)
            with pytest.raises(AmbiguousSchemaUpdateError):
                await client.update_schema(dataset.id, DatasetSchema(strict=False, fields=SCHEMA.fields))
            view = await client.get_dataset(dataset.id)
    assert len(sent(sbx, "PATCH")) == 1
    assert view.dataset_schema is not None and view.dataset_schema.strict is False  # it was applied


@pytest.mark.anyio
async def test_upload_url_that_fails_after_sending_reports_the_orphan(sbx: Sandbox, clock: FakeClock) -> None:
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Orphan", sbx.workspace_id, SCHEMA)
            sbx.faults.add("GET */upload-url/*", action="drop", when="after", times=1)
            with pytest.raises(AmbiguousUploadUrlError) as info:
                await client.get_upload_url(dataset.id, "data.jsonl")
            imports = (await client.get_dataset(dataset.id)).imports or []
    assert len(sent(sbx, "GET", contains="/upload-url/")) == 1
    assert [j.status for j in imports] == ["uninitialised"]
    assert info.value.orphan_import_ids == (imports[0].import_id,)
    assert imports[0].import_id in str(info.value)


# --- paths, redirects, errors ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_filename_arrives_as_one_encoded_segment(sbx: Sandbox, clock: FakeClock) -> None:
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Paths", sbx.workspace_id, SCHEMA)
            target = await client.get_upload_url(dataset.id, "a/../../workspaces?x=1.jsonl")
            imports = (await client.get_dataset(dataset.id)).imports or []
    (request,) = sent(sbx, "GET", contains="/upload-url/")
    assert request.path == f"/api/v1/data-collection/datasets/{dataset.id}/upload-url/workspaces%3Fx%3D1.jsonl"
    assert request.query == ""
    assert target.filename == imports[0].filename == "workspaces?x=1.jsonl"


@pytest.mark.anyio
async def test_redirects_are_refused(sbx: Sandbox, clock: FakeClock) -> None:
    with anyio.fail_after(20):
        async with serve(respond(200)) as elsewhere, client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Redirect", sbx.workspace_id, SCHEMA)
            sbx.faults.add(f"GET /api/v1/data-collection/datasets/{dataset.id}", location=f"{elsewhere.url}/x")
            with pytest.raises(RedirectRefusedError):
                await client.get_dataset(dataset.id)
            target = await client.get_upload_url(dataset.id, "data.jsonl")
            sbx.faults.add("PUT *", location=f"{elsewhere.url}/y")
            with pytest.raises(UploadRejectedError, match="redirect"):
                await client.put_file(target, io.BytesIO(GOOD), size=len(GOOD))
    assert elsewhere.connections == []


@pytest.mark.anyio
async def test_api_errors_from_the_sandbox(sbx: Sandbox, clock: FakeClock) -> None:
    missing = "0192a3b5-e8f9-7a0b-1c2d-000000000000"
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            with pytest.raises(NotFoundError, match=f"the dataset {missing} was not found"):
                await client.get_dataset(missing)
            dataset = await client.create_dataset("Errors", sbx.workspace_id, SCHEMA)
            with pytest.raises(NotFoundError, match="check both ids"):
                await client.get_import(dataset.id, missing)
            bad = DatasetSchema(strict=True, fields={"a": SchemaField(type="sound")})
            with pytest.raises(BadRequestError, match="sound") as info:
                await client.create_dataset("Bad", sbx.workspace_id, bad)
            assert info.value.details
            legacy = await client.create_dataset("Legacy", sbx.legacy_workspace_id, None)
            with pytest.raises(BadRequestError):
                await client.update_schema(legacy.id, SCHEMA)
            with pytest.raises(BadRequestError, match="typed-dataset feature") as refused:
                await client.create_dataset("Typed", sbx.legacy_workspace_id, SCHEMA)
            assert refused.value.status == 400 and refused.value.details[0].startswith("schema: ")
    assert len(sent(sbx, "GET", contains=missing)) == 2  # no retries on 404


# --- what Prolific's CLI copes with, over the sandbox ---------------------------------------------------------------


@pytest.mark.anyio
async def test_pages_follow_the_links_the_sandbox_serves(
    sbx: Sandbox, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox serves Prolific's `_links.next.href`; the client follows it page by page to the last."""
    monkeypatch.setattr(client_module, "PAGE_SIZE", 2)
    for i in range(3):
        sbx.seed_workspace(f"Paged {i}")
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            workspaces = await client.list_workspaces()
    gets = sent(sbx, "GET", contains="/workspaces/")
    total = len(workspaces)
    assert total >= 5 and len({w.id for w in workspaces}) == total
    assert {sbx.workspace_id, sbx.legacy_workspace_id} <= {w.id for w in workspaces}
    assert [dict(parse_qsl(r.query)) for r in gets] == [
        {"limit": "2", "offset": str(offset)} for offset in range(0, total, 2)
    ]


@pytest.mark.anyio
async def test_answers_prolific_may_give_are_tolerated(sbx: Sandbox, clock: FakeClock, tmp_path: Path) -> None:
    """An upload URL with `http_method: null`, an import answer without its ids, and a 204 to a schema change: the
    upload goes through, the import is followed, and the change is read back from the dataset."""
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Tolerant", sbx.workspace_id, None)
            async with httpx2.AsyncClient(base_url=sbx.url, headers={"Authorization": "Token t"}) as raw:
                issued = (await raw.get(f"{DATASETS}/{dataset.id}/upload-url/data.jsonl")).json()
            sbx.faults.add(
                "GET */upload-url/*",
                status=201,
                body=orjson.dumps({**issued, "http_method": None}).decode(),
                content_type="application/json",
            )
            target = await client.get_upload_url(dataset.id, "data.jsonl")
            assert (target.http_method, target.import_id) == ("PUT", issued["import_id"])
            await client.put_file(target, _file(tmp_path, GOOD), size=len(GOOD))

            parked, _ = await wait_terminal(client, dataset.id, issued["import_id"])
            assert parked.status == "pending_schema"
            sbx.faults.add(f"PATCH {DATASETS}/{dataset.id}", status=204, body="", when="after")
            update = await client.update_schema(dataset.id, SCHEMA)
            assert update.answer_empty and update.dataset.dataset_schema == SCHEMA

            sbx.faults.add(f"GET {DATASETS}/{dataset.id}/imports/*", status=200, body='{"status": "processing"}')
            bare = await client.get_import(dataset.id, issued["import_id"])
            assert (bare.import_id, bare.dataset_id, bare.status) == (issued["import_id"], dataset.id, "processing")
            job, _ = await wait_terminal(client, dataset.id, issued["import_id"])
            assert (job.status, job.accepted_count) == ("complete", 2)


# --- redaction ---------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_nothing_secret_in_errors_or_logs(
    sbx: Sandbox, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx2", "httpcore2"):
        caplog.set_level(logging.DEBUG, logger=name)
    path = _file(tmp_path, GOOD)
    errors: list[BaseException] = []
    with anyio.fail_after(20):
        async with client_for(sbx, clock) as client:
            dataset = await client.create_dataset("Leaks", sbx.workspace_id, SCHEMA)
            targets = [await client.get_upload_url(dataset.id, "data.jsonl") for _ in range(3)]
            sbx.faults.add("PUT *", status=503, xml_code="SlowDown", times=5)
            sbx.faults.add("PUT *", status=403, xml_code="AccessDenied", message="Access Denied", times=1)
            for target, content_type in ((targets[0], None), (targets[1], None), (targets[2], "text/plain")):
                try:
                    await client.put_file(target, path, size=len(GOOD), content_type=content_type)
                except Exception as exc:
                    errors.append(exc)
    assert [type(e).__name__ for e in errors] == [
        "UploadFailedError",
        "UploadRejectedError",
        "UploadSignatureMismatchError",
    ]
    signatures = [_signature(t) for t in targets]
    texts = [t for e in errors for t in exception_texts(e)] + [caplog.text] + [r.getMessage() for r in caplog.records]
    assert_no_leak(*texts)
    for text in texts:
        assert not any(s in text for s in signatures)
    assert "X-Amz-Signature=REDACTED" in caplog.text  # httpx2 logged the URL, redacted


# --- helpers -----------------------------------------------------------------------------------------------------


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "upload.jsonl"
    path.write_bytes(data)
    return path


def _signature(target: UploadTarget) -> str:
    return dict(parse_qsl(urlsplit(target.upload_url).query))["X-Amz-Signature"]
