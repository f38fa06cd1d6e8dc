"""Plain-HTTP helpers for the sandbox tests (httpx2 directly, as an outside client would)."""

from __future__ import annotations

import atexit
import csv
import io
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
import orjson

T = TypeVar("T")

DATASETS = "/api/v1/data-collection/datasets"
TERMINAL = ("complete", "partial", "failed", "pending_schema")
SCHEMA: dict[str, Any] = {
    "strict": True,
    "fields": {
        "prompt": {"type": "text", "label": "Prompt"},
        "response": {"type": "text"},
        "image": {"type": "image_url"},
        "batch": {"type": "task_group_id"},
    },
}


def contract_csv() -> bytes:
    """The contract's CSV: 40 rows, defects at 0-based rows 4 (too long), 11 (missing), 19 and 32 (bad URLs)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["prompt", "response", "image", "batch"])
    for i in range(40):
        row = [f"Prompt {i}", f"Response {i}", f"https://cdn.example.net/{i}.png", f"b{i % 4}"]
        if i == 4:
            row[0] = "p" * 10001
        if i == 11:
            row[1] = ""
        if i == 19:
            row[2] = "ftp://cdn.example.net/x.png"
        if i == 32:
            row[2] = "https://"
        writer.writerow(row)
    return buf.getvalue().encode()


def record(i: int, **changes: object) -> dict[str, object]:
    """A valid record for SCHEMA."""
    out: dict[str, object] = {
        "prompt": f"Prompt {i}",
        "response": f"Response {i}",
        "image": f"https://cdn.example.net/{i}.png",
        "batch": f"b{i % 3}",
    }
    out.update(changes)
    return out


def jsonl(records: list[dict[str, object]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def wait_for(fn: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.02) -> T:
    """Poll `fn` until it returns something other than None; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def create_dataset(
    api: httpx2.Client, workspace_id: str, schema: dict[str, Any] | None = SCHEMA, name: str = "t"
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "workspace_id": workspace_id}
    if schema is not None:
        body["schema"] = schema
    response = api.post(DATASETS, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def upload_url(api: httpx2.Client, dataset_id: str, filename: str) -> dict[str, Any]:
    response = api.get(f"{DATASETS}/{dataset_id}/upload-url/{filename}")
    assert response.status_code == 201, response.text
    return dict(response.json())


_S3 = httpx2.Client(timeout=10)
"""One plain client for presigned PUTs (no auth, no base URL), reused: building a client costs ~20 ms."""
atexit.register(_S3.close)


def put(url: str, body: bytes, content_type: str, **headers: str) -> httpx2.Response:
    return _S3.put(url, content=body, headers={"Content-Type": content_type, **headers})


def upload(api: httpx2.Client, dataset_id: str, filename: str, body: bytes) -> dict[str, Any]:
    """upload-url, then the PUT; returns the upload-url response."""
    up = upload_url(api, dataset_id, filename)
    response = put(up["upload_url"], body, up["content_type"])
    assert response.status_code == 200, response.text
    return up


def get_import(api: httpx2.Client, dataset_id: str, import_id: str) -> dict[str, Any]:
    response = api.get(f"{DATASETS}/{dataset_id}/imports/{import_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_import(
    api: httpx2.Client, dataset_id: str, import_id: str, done: tuple[str, ...] = TERMINAL, timeout: float = 15.0
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job = get_import(api, dataset_id, import_id)
        return job if job["status"] in done else None

    return wait_for(check, timeout)


def watch_import(
    api: httpx2.Client, dataset_id: str, import_id: str, timeout: float = 15.0
) -> tuple[dict[str, Any], list[str]]:
    """Poll until terminal; returns the final job and the distinct statuses seen in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get_import(api, dataset_id, import_id)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in TERMINAL:
            return job, seen
        time.sleep(0.02)
    raise AssertionError(f"import did not finish within {timeout} s; saw {seen}")


def import_and_wait(api: httpx2.Client, dataset_id: str, filename: str, body: bytes) -> dict[str, Any]:
    up = upload(api, dataset_id, filename, body)
    return wait_import(api, dataset_id, up["import_id"])


def get_dataset(api: httpx2.Client, dataset_id: str) -> dict[str, Any]:
    response = api.get(f"{DATASETS}/{dataset_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def error_of(response: httpx2.Response) -> dict[str, Any]:
    """The error envelope's inner object, checking its shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"status", "error_code", "title", "detail"} <= set(error), error
    assert error["status"] == response.status_code
    return dict(error)


def xml_code(response: httpx2.Response) -> str:
    text = response.text
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>'), text
    assert "<RequestId>" in text, text
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0]


def raw_request(url: str, head: bytes, body: bytes = b"", *, close_after: bool = False) -> bytes:
    """Send raw bytes to the host of `url` (head is the request line + headers, without the blank line)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        if close_after:
            return b""
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return True


def target(url: str) -> str:
    """The request target (path?query) of a URL."""
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")
