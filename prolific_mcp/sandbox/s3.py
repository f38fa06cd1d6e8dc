"""The fake S3: presigned upload URLs and the PUT that stores an object, enforcing what real S3 enforces.

Checks, in this order (docs/sandbox.md, docs/reliability.md):
1. the presigned query parameters and the signature, which covers method, path, `Content-Type` and expiry
   → 403 `SignatureDoesNotMatch` (checked before anything else about the request);
2. no `Authorization` header (one authentication mechanism per request) → 400 `InvalidArgument`;
3. not expired, judged when the request starts, on the sandbox clock → 403 `AccessDenied` "Request has expired";
4. no `Transfer-Encoding` → 501 `NotImplemented`; a `Content-Length` → 411 `MissingContentLength`;
5. the size cap → 400 `EntityTooLarge`.
Then the body is streamed to a file in the state folder; an object appears only when the body is complete, so a
client that drops mid-body leaves nothing behind and its import stays `uninitialised`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, quote, urlencode
from xml.sax.saxutils import escape

from starlette.types import Receive, Scope, Send

from prolific_mcp.sandbox.clock import Clock, amz_date, parse_amz_date, s3_time
from prolific_mcp.sandbox.rows import StoredUpload
from prolific_mcp.sandbox.store import Db, Store
from prolific_mcp.sandbox.traffic import ApiTraffic

log = logging.getLogger("prolific_mcp.sandbox.s3")

BUCKET: Final = "prolific-sandbox-uploads"
REGION: Final = "eu-west-2"
ALGORITHM: Final = "AWS4-HMAC-SHA256"
SIGNED_HEADERS: Final = "content-type;host"
PRESIGN_PARAMS: Final = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
WRITE_BUFFER: Final = 1024 * 1024
MAX_PRESIGN_SECONDS: Final = 7 * 24 * 3600


def object_url_path(file_key: str) -> str:
    """The path of an object in the fake S3, percent-encoded (path-style: /bucket/key)."""
    return "/" + quote(f"{BUCKET}/{file_key}", safe="/")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking a presigned request: `error` is None when it may proceed."""

    error: tuple[int, str, str, dict[str, str]] | None
    expires_at: float = 0.0


class Signer:
    """Signs and checks presigned PUT URLs with the sandbox's secret (HMAC-SHA256, in the spirit of SigV4)."""

    def __init__(self, secret: str, access_key: str) -> None:
        self._secret = secret.encode()
        self.access_key = access_key

    @staticmethod
    def string_to_sign(
        method: str, path: str, content_type: str, date: str, expires: str, credential: str, signed: str
    ) -> str:
        return "\n".join((ALGORITHM, date, credential, method, path, content_type, expires, signed))

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()

    def presign(self, base_url: str, file_key: str, content_type: str, now: float, lifetime: float) -> str:
        """A presigned PUT URL for `file_key`, valid `lifetime` seconds from `now`."""
        date = amz_date(now)
        expires = str(max(1, min(int(lifetime), MAX_PRESIGN_SECONDS)))
        credential = f"{self.access_key}/{date[:8]}/{REGION}/s3/aws4_request"
        path = f"/{BUCKET}/{file_key}"
        signature = self._sign(
            self.string_to_sign("PUT", path, content_type, date, expires, credential, SIGNED_HEADERS)
        )
        query = urlencode(
            [
                ("X-Amz-Algorithm", ALGORITHM),
                ("X-Amz-Credential", credential),
                ("X-Amz-Date", date),
                ("X-Amz-Expires", expires),
                ("X-Amz-SignedHeaders", SIGNED_HEADERS),
                ("X-Amz-Signature", signature),
            ]
        )
        return f"{base_url}{object_url_path(file_key)}?{query}"

    def check(self, method: str, path: str, content_type: str, params: Mapping[str, str], now: float) -> Verdict:
        """Check signature, then expiry (the Authorization-header rule sits between them, in the app)."""
        present = [p for p in PRESIGN_PARAMS if p in params]
        if not present:
            return Verdict((403, "AccessDenied", "Access Denied", {}))
        if len(present) != len(PRESIGN_PARAMS):
            missing = ", ".join(p for p in PRESIGN_PARAMS if p not in params)
            return Verdict(
                (
                    400,
                    "AuthorizationQueryParametersError",
                    f"Query-string authentication version 4 requires the {missing} parameter(s).",
                    {},
                )
            )
        date, expires, credential = params["X-Amz-Date"], params["X-Amz-Expires"], params["X-Amz-Credential"]
        text = self.string_to_sign(method, path, content_type, date, expires, credential, params["X-Amz-SignedHeaders"])
        expected = self._sign(text)
        if params["X-Amz-Algorithm"] != ALGORITHM or not hmac.compare_digest(
            expected.encode(), params["X-Amz-Signature"].encode("utf-8", "surrogateescape")
        ):
            return Verdict(
                (
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided. "
                    "Check your key and signing method.",
                    {
                        "AWSAccessKeyId": credential.split("/", 1)[0],
                        "StringToSign": text,
                        "SignatureProvided": params["X-Amz-Signature"],
                    },
                )
            )
        signed_at = parse_amz_date(date)
        if signed_at is None or not expires.isdigit():
            return Verdict((400, "AuthorizationQueryParametersError", "X-Amz-Date or X-Amz-Expires is invalid.", {}))
        expires_at = signed_at + int(expires)
        return Verdict(None, expires_at)


def xml_error(
    status: int, code: str, message: str, *, resource: str = "", extra: Mapping[str, str] | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """An S3-shaped XML error: status, headers and body."""
    request_id = secrets.token_hex(8).upper()
    host_id = base64.b64encode(secrets.token_bytes(48)).decode()
    parts = [f"<Code>{escape(code)}</Code>", f"<Message>{escape(message)}</Message>"]
    for key, value in (extra or {}).items():
        parts.append(f"<{key}>{escape(value)}</{key}>")
    if resource:
        parts.append(f"<Resource>{escape(resource)}</Resource>")
    parts.append(f"<RequestId>{request_id}</RequestId><HostId>{host_id}</HostId>")
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>").encode()
    headers = [
        (b"content-type", b"application/xml"),
        (b"x-amz-request-id", request_id.encode()),
        (b"x-amz-id-2", host_id.encode()),
    ]
    return status, headers, body


S3_DEFAULT_CODES: Final = {
    400: ("InvalidRequest", "Invalid Request"),
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    409: ("OperationAborted", "A conflicting conditional operation is currently in progress against this resource."),
    429: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    501: ("NotImplemented", "A header you provided implies functionality that is not implemented."),
    503: ("SlowDown", "Please reduce your request rate."),
}


def default_s3_error(status: int) -> tuple[str, str]:
    """The S3 error code and message usually sent with an HTTP status."""
    return S3_DEFAULT_CODES.get(status, ("ServiceUnavailable" if status >= 500 else "InvalidRequest", "Error"))


async def send_bytes(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, close: bool = False
) -> None:
    """Send a complete response."""
    hdrs = [*headers, (b"content-length", str(len(body)).encode())]
    if close:
        hdrs.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class S3App:
    """ASGI app of the fake S3 port: presigned PUTs of upload objects."""

    def __init__(
        self,
        store: Store,
        signer: Signer,
        clock: Clock,
        max_object_size: int,
        on_queued: Callable[[StoredUpload], None],
        traffic: ApiTraffic | None = None,
    ) -> None:
        self.traffic = traffic or ApiTraffic()
        """The API's requests in flight: the receiver stops reading a body while any is (traffic.py)."""
        self.store = store
        self.signer = signer
        self.clock = clock
        self.max_object_size = max_object_size
        self.on_queued = on_queued

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        path: str = scope["path"]
        params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        method: str = scope["method"]
        now = self.clock.now()
        verdict = self.signer.check(method, path, headers.get("content-type", ""), params, now)
        if verdict.error is not None:
            status, code, message, extra = verdict.error
            await self._error(send, status, code, message, path, extra)
            return
        if "authorization" in headers:
            await self._error(
                send,
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
                "string parameter or the Authorization header should be specified",
                path,
                {"ArgumentName": "Authorization", "ArgumentValue": headers["authorization"]},
            )
            return
        if now > verdict.expires_at:
            await self._error(
                send,
                403,
                "AccessDenied",
                "Request has expired",
                path,
                {
                    "X-Amz-Expires": params["X-Amz-Expires"],
                    "Expires": s3_time(verdict.expires_at),
                    "ServerTime": s3_time(now),
                },
            )
            return
        if "transfer-encoding" in headers:
            await self._error(
                send,
                501,
                "NotImplemented",
                "A header you provided implies functionality that is not implemented",
                path,
                {"Header": "Transfer-Encoding"},
            )
            return
        length_text = headers.get("content-length")
        if length_text is None:
            await self._error(
                send, 411, "MissingContentLength", "You must provide the Content-Length HTTP header.", path
            )
            return
        length = int(length_text) if length_text.isdigit() else -1
        if length < 0:
            await self._error(send, 400, "InvalidArgument", "Content-Length is not a valid number.", path)
            return
        if length > self.max_object_size:
            await self._error(
                send,
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                path,
                {"ProposedSize": str(length), "MaxSizeAllowed": str(self.max_object_size)},
            )
            return
        file_key = path.removeprefix(f"/{BUCKET}/")
        upload = await self.store.run(Db.upload_by_key, file_key)
        if upload is None:
            await self._error(send, 404, "NoSuchUpload", "The upload this URL was issued for no longer exists.", path)
            return
        stored = await self._store_body(receive, upload, length)
        if stored is None:
            return
        size, etag = stored
        queued = await self.store.run(Db.object_stored, upload.pk, size, etag)
        if queued:
            self.on_queued(upload)
        request_id = secrets.token_hex(8).upper()
        await send_bytes(send, 200, [(b"etag", f'"{etag}"'.encode()), (b"x-amz-request-id", request_id.encode())], b"")

    async def _error(
        self, send: Send, status: int, code: str, message: str, resource: str, extra: Mapping[str, str] | None = None
    ) -> None:
        status, headers, body = xml_error(status, code, message, resource=resource, extra=extra)
        # Refusing before reading the body: close afterwards, as S3 does, rather than drain a large body.
        await send_bytes(send, status, headers, body, close=True)

    async def _store_body(self, receive: Receive, upload: StoredUpload, length: int) -> tuple[int, str] | None:
        """Stream the body to a temporary file and move it into place once complete; None if the client left."""
        final = self.store.object_path(upload.id)
        temp = final.with_name(f"{upload.id}.{secrets.token_hex(4)}.part")
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        complete = False
        handle = await asyncio.to_thread(open, temp, "wb")
        traffic = self.traffic
        try:
            pending: list[bytes] = []
            pending_size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunk: bytes = message.get("body", b"")
                if chunk:
                    md5.update(chunk)
                    size += len(chunk)
                    pending.append(chunk)
                    pending_size += len(chunk)
                    if pending_size >= WRITE_BUFFER:
                        await asyncio.to_thread(handle.write, b"".join(pending))
                        pending, pending_size = [], 0
                if not message.get("more_body", False):
                    complete = size == length
                    break
                if traffic.in_flight:  # between two chunks of the body: let the API's request go first
                    await traffic.yield_to_api()
            if complete and pending:
                await asyncio.to_thread(handle.write, b"".join(pending))
        finally:
            await asyncio.to_thread(handle.close)
            if complete:
                await asyncio.to_thread(os.replace, temp, final)
            else:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(Path.unlink, temp)
        if not complete:
            log.info("PUT of %s ended after %d of %d bytes: nothing stored", upload.file_key, size, length)
            return None
        return size, md5.hexdigest()


def request_headers(scope: Scope) -> dict[str, str]:
    """A request's headers by lower-case name (a repeated header's values joined by ', ')."""
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out
