"""The fake S3: what a presigned PUT must satisfy, in real S3's order, and what it stores."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from prolific_mcp.sandbox import Sandbox

from .conftest import client
from .support import (
    create_dataset,
    get_dataset,
    get_import,
    jsonl,
    put,
    raw_request,
    record,
    target,
    upload_url,
    wait_for,
    wait_import,
    xml_code,
)

BODY = jsonl([record(i) for i in range(4)])


@pytest.fixture
def issued(sbx: Sandbox, api: httpx2.Client) -> dict[str, str]:
    ds = create_dataset(api, sbx.workspace_id)
    return {**upload_url(api, ds["id"], "data.jsonl"), "dataset_id": ds["id"]}


def object_files(sandbox: Sandbox) -> list[Path]:
    return sorted((sandbox.state_dir / "objects").iterdir())


def test_put_succeeds_with_etag_and_queues_the_import(sbx: Sandbox, api: httpx2.Client, issued: dict[str, str]) -> None:
    response = put(issued["upload_url"], BODY, "application/x-ndjson")
    assert response.status_code == 200
    assert response.headers["etag"] == f'"{hashlib.md5(BODY, usedforsecurity=False).hexdigest()}"'
    assert response.content == b""
    stored = sbx.state_dir / "objects" / f"{issued['import_id']}.bin"
    assert stored.read_bytes() == BODY
    assert wait_import(api, issued["dataset_id"], issued["import_id"])["status"] == "complete"
    log = [r for r in sbx.requests if r.server == "s3"]
    assert len(log) == 1
    assert log[0].method == "PUT"
    assert log[0].body_size == len(BODY)
    assert log[0].status == 200
    assert "authorization" not in log[0].headers
    assert log[0].headers["content-type"] == "application/x-ndjson"
    assert log[0].path == target(issued["upload_url"]).split("?")[0]
    assert "X-Amz-Signature" in log[0].params


def test_wrong_content_type_is_signature_mismatch(issued: dict[str, str]) -> None:
    for content_type in ("text/plain", "application/x-ndjson; charset=utf-8", "application/octet-stream"):
        response = put(issued["upload_url"], BODY, content_type)
        assert response.status_code == 403
        assert xml_code(response) == "SignatureDoesNotMatch"
        assert f"\n{content_type}\n" in response.text
        assert response.headers["content-type"] == "application/xml"


def test_tampered_urls(issued: dict[str, str]) -> None:
    url = issued["upload_url"]
    for tampered in (
        url.replace("X-Amz-Signature=", "X-Amz-Signature=0"),
        url.replace("X-Amz-Expires=900", "X-Amz-Expires=9000"),
        url.replace("data.jsonl", "other.jsonl"),
    ):
        response = put(tampered, BODY, "application/x-ndjson")
        assert response.status_code == 403
        assert xml_code(response) == "SignatureDoesNotMatch"
    bare = put(url.split("?")[0], BODY, "application/x-ndjson")
    assert (bare.status_code, xml_code(bare)) == (403, "AccessDenied")
    partial = put(url.split("&X-Amz-Signature=")[0], BODY, "application/x-ndjson")
    assert (partial.status_code, xml_code(partial)) == (400, "AuthorizationQueryParametersError")
    with httpx2.Client(timeout=10) as s3:
        get = s3.get(url)
    assert (get.status_code, xml_code(get)) == (403, "SignatureDoesNotMatch")


def test_authorization_header_is_refused_after_the_signature_check(issued: dict[str, str]) -> None:
    response = put(issued["upload_url"], BODY, "application/x-ndjson", Authorization="Token secret-token")
    assert response.status_code == 400
    assert xml_code(response) == "InvalidArgument"
    assert "<ArgumentName>Authorization</ArgumentName>" in response.text
    # A bad signature wins over the header: it is checked first.
    wrong = put(issued["upload_url"], BODY, "text/plain", Authorization="Token secret-token")
    assert (wrong.status_code, xml_code(wrong)) == (403, "SignatureDoesNotMatch")


def test_expiry_on_the_sandbox_clock(sbx: Sandbox, api: httpx2.Client, issued: dict[str, str]) -> None:
    sbx.clock.advance(899)
    fresh_enough = create_dataset(api, sbx.workspace_id)
    still = upload_url(api, fresh_enough["id"], "late.jsonl")
    sbx.clock.advance(2)
    response = put(issued["upload_url"], BODY, "application/x-ndjson")
    assert response.status_code == 403
    assert xml_code(response) == "AccessDenied"
    assert "<Message>Request has expired</Message>" in response.text
    assert "<X-Amz-Expires>900</X-Amz-Expires>" in response.text
    assert "<Expires>" in response.text
    assert "<ServerTime>" in response.text
    # Signature before expiry; Authorization between them.
    assert xml_code(put(issued["upload_url"], BODY, "text/csv")) == "SignatureDoesNotMatch"
    assert xml_code(put(issued["upload_url"], BODY, "application/x-ndjson", Authorization="Token t")) == (
        "InvalidArgument"
    )
    assert put(still["upload_url"], BODY, "application/x-ndjson").status_code == 200
    assert get_import(api, issued["dataset_id"], issued["import_id"])["status"] == "uninitialised"


def test_chunked_is_not_implemented(sbx: Sandbox, issued: dict[str, str]) -> None:
    def chunks() -> Iterator[bytes]:
        yield BODY

    with httpx2.Client(timeout=10) as s3:
        response = s3.put(issued["upload_url"], content=chunks(), headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 501
    assert xml_code(response) == "NotImplemented"
    assert "<Header>Transfer-Encoding</Header>" in response.text
    assert not (sbx.state_dir / "objects" / f"{issued['import_id']}.bin").exists()


def test_missing_content_length(issued: dict[str, str]) -> None:
    head = f"PUT {target(issued['upload_url'])} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson".encode()
    reply = raw_request(issued["upload_url"], head)
    assert reply.startswith(b"HTTP/1.1 411 ")
    assert b"<Code>MissingContentLength</Code>" in reply


def test_size_cap(tmp_path: Path) -> None:
    with Sandbox.start(state_dir=tmp_path, pace="fast", max_object_size=1024) as sandbox, client(sandbox) as api:
        ds = create_dataset(api, sandbox.workspace_id)
        up = upload_url(api, ds["id"], "big.jsonl")
        response = put(up["upload_url"], b"x" * 1025, up["content_type"])
        assert response.status_code == 400
        assert xml_code(response) == "EntityTooLarge"
        assert "<MaxSizeAllowed>1024</MaxSizeAllowed>" in response.text
        assert "<ProposedSize>1025</ProposedSize>" in response.text
        assert put(up["upload_url"], b"x" * 1024, up["content_type"]).status_code == 200


def test_dropped_body_stores_nothing(sbx: Sandbox, api: httpx2.Client, issued: dict[str, str]) -> None:
    head = (
        f"PUT {target(issued['upload_url'])} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
        f"Content-Length: {len(BODY) + 500}"
    ).encode()
    raw_request(issued["upload_url"], head, BODY, close_after=True)
    dropped = wait_for(lambda: next((r for r in sbx.requests.for_server("s3") if r.finished), None))
    assert dropped.status is None
    assert dropped.body_size <= len(BODY)
    assert not list((sbx.state_dir / "objects").glob("*.part"))
    assert not (sbx.state_dir / "objects" / f"{issued['import_id']}.bin").exists()
    assert get_import(api, issued["dataset_id"], issued["import_id"])["status"] == "uninitialised"
    # The URL still works afterwards (retry from byte 0).
    assert put(issued["upload_url"], BODY, "application/x-ndjson").status_code == 200
    assert wait_import(api, issued["dataset_id"], issued["import_id"])["accepted_count"] == 4


def test_body_dropped_after_partial_writes_stores_nothing(
    sbx: Sandbox, api: httpx2.Client, issued: dict[str, str]
) -> None:
    """Past the receiver's write buffer, part of the body is already on disk when the client goes: still nothing."""
    body = BODY * (3 * 1024 * 1024 // len(BODY) + 1)
    sent = body[: 2 * 1024 * 1024 + 7]
    head = (
        f"PUT {target(issued['upload_url'])} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
        f"Content-Length: {len(body)}"
    ).encode()
    raw_request(issued["upload_url"], head, sent, close_after=True)
    dropped = wait_for(lambda: next((r for r in sbx.requests.for_server("s3") if r.finished), None))
    assert dropped.status is None
    assert dropped.body_size <= len(sent)
    assert not list((sbx.state_dir / "objects").glob("*.part"))
    assert not (sbx.state_dir / "objects" / f"{issued['import_id']}.bin").exists()
    assert get_import(api, issued["dataset_id"], issued["import_id"])["status"] == "uninitialised"


def test_second_put_replaces_the_object_without_a_second_import(
    sbx: Sandbox, api: httpx2.Client, issued: dict[str, str]
) -> None:
    assert put(issued["upload_url"], BODY, "application/x-ndjson").status_code == 200
    assert wait_import(api, issued["dataset_id"], issued["import_id"])["accepted_count"] == 4
    other = jsonl([record(50)])
    response = put(issued["upload_url"], other, "application/x-ndjson")
    assert response.status_code == 200
    stored = sbx.state_dir / "objects" / f"{issued['import_id']}.bin"
    assert stored.read_bytes() == other
    view = get_dataset(api, issued["dataset_id"])
    assert len(view["imports"]) == 1
    assert view["imports"][0]["accepted_count"] == 4
    assert view["total_datapoint_count"] == 4


def test_put_while_queued_uses_the_latest_object(tmp_path: Path) -> None:
    from prolific_mcp.sandbox import Pace

    with Sandbox.start(state_dir=tmp_path, pace=Pace(queued=0.5, processing=0)) as sandbox, client(sandbox) as api:
        ds = create_dataset(api, sandbox.workspace_id)
        up = upload_url(api, ds["id"], "a.jsonl")
        assert put(up["upload_url"], jsonl([record(1)]), up["content_type"]).status_code == 200
        assert put(up["upload_url"], jsonl([record(1), record(2)]), up["content_type"]).status_code == 200
        job = wait_import(api, ds["id"], up["import_id"])
        assert job["accepted_count"] == 2
        assert len(get_dataset(api, ds["id"])["imports"]) == 1


def test_each_origin_answers_only_its_own_routes(sbx: Sandbox, api: httpx2.Client, issued: dict[str, str]) -> None:
    with httpx2.Client(base_url=sbx.s3_url, headers={"Authorization": "Token t"}, timeout=10) as on_s3:
        response = on_s3.get("/api/v1/workspaces/")
        assert response.status_code == 403
        assert xml_code(response) == "AccessDenied"
    on_api = api.put(target(issued["upload_url"]), content=BODY, headers={"Content-Type": "application/x-ndjson"})
    assert on_api.status_code in (404, 405)
    assert "error" in on_api.json()
    assert [r.server for r in sbx.requests[-2:]] == ["s3", "api"]
