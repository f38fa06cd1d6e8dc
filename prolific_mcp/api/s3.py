"""The PUT of a file to its presigned upload URL: URL checks, the streamed body, S3's XML errors, retries.

The body is streamed from disk in chunks with an explicit `Content-Length` (S3 refuses chunked transfer
encoding), in constant memory, and re-read from byte 0 on every attempt. Nothing but `Content-Type` and
`Content-Length` is added: no Authorization, no User-Agent of ours.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import BinaryIO, Final, Protocol
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
import httpx2

from prolific_mcp.api.errors import (
    FileChangedError,
    FileEditedError,
    ProlificError,
    UnexpectedResponseError,
    UnsafeUploadUrlError,
    UploadError,
    UploadFailedError,
    UploadRejectedError,
    UploadSignatureMismatchError,
    UploadTooLargeError,
    UploadUrlExpiredError,
)
from prolific_mcp.api.models import PutResult, UploadTarget
from prolific_mcp.api.retry import (
    AmbiguousOutcome,
    AttemptFailure,
    CallKind,
    Condition,
    Timing,
    call_with_retries,
    condition_for_exception,
    parse_retry_after,
)
from prolific_mcp.net import is_loopback_host
from prolific_mcp.redaction import SENSITIVE_QUERY_PARAMS, redact, redact_url
from prolific_mcp.text import for_agent

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ERROR_BODY_LIMIT",
    "FileSource",
    "Pacer",
    "ProgressCallback",
    "S3ErrorInfo",
    "check_fixed_length",
    "check_upload_url",
    "parse_s3_error",
    "put_presigned",
    "read_bounded",
    "upload_failure",
]

DEFAULT_CHUNK_SIZE: Final = 1024 * 1024
ERROR_BODY_LIMIT: Final = 64 * 1024
"""Bytes of an error body read at most (the rest is never read: S8)."""
CLEANUP_SECONDS: Final = 5.0

ProgressCallback = Callable[[int, int], Awaitable[None] | None]
"""`on_progress(bytes_sent, size)`: called as chunks go out, never with a smaller count than before."""

Pacer = Callable[[int, bool], Awaitable[None]]
"""`pace(end, last)`: awaited before each chunk of a PUT is sent (`end`: the offset the chunk ends at; `last`: it is
the final one). It may hold the upload back; what it raises ends the upload with the body incomplete, so the store
keeps nothing."""

FileSource = str | os.PathLike[str] | int | BinaryIO
"""A path, an open file descriptor, or an open binary file object."""


def _is_internal_ip(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
        or address.is_multicast
    )


def check_upload_url(url: str, *, sandbox: bool) -> httpx2.URL:
    """Refuse an upload URL before any byte is sent; return it parsed.

    Always refused: a scheme other than http(s), userinfo, no host, whitespace or control characters. Plain
    http only in sandbox mode and only to a loopback host; outside sandbox mode also no `localhost` and no
    private, loopback or link-local IP literal.
    """
    shown = redact_url(url)

    def refuse(why: str) -> UnsafeUploadUrlError:
        return UnsafeUploadUrlError(
            f"refused the upload URL Prolific returned ({shown}): {why}. Nothing was uploaded; request a new "
            "upload URL, and if this repeats, check PROLIFIC_URL"
        )

    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise refuse("it contains whitespace or control characters")
    try:
        parsed = httpx2.URL(url)
    except httpx2.InvalidURL:
        raise refuse("it is not a valid URL") from None
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https"):
        raise refuse(f"the scheme {scheme or '(none)'!r} is not https")
    if parsed.userinfo or "@" in url.split("?", 1)[0].split("#", 1)[0].split("//", 1)[-1].split("/", 1)[0]:
        raise refuse("it carries a user name or password")
    host = parsed.host
    if not host:
        raise refuse("it has no host")
    if scheme == "http":
        if not sandbox:
            raise refuse("it is plain http; uploads go over https only")
        if not is_loopback_host(host):
            raise refuse("plain http is allowed in sandbox mode only to a loopback host")
    elif not sandbox and (is_loopback_host(host) or _is_internal_ip(host)):
        raise refuse("it points at a local or private address")
    return parsed


def check_fixed_length(request: httpx2.Request, size: int) -> None:
    """Refuse to send a PUT without `Content-Length: size` or with chunked encoding (S3 answers 501/411)."""
    if "transfer-encoding" in request.headers or request.headers.get("content-length") != str(size):
        raise UploadRejectedError(
            "refused to send the upload without a fixed Content-Length (S3 rejects chunked uploads); "
            "nothing was sent. This is a bug in prolific-datasets-mcp: please report it"
        )


async def read_bounded(response: httpx2.Response, limit: int) -> tuple[bytes, bool]:
    """Read at most `limit` bytes of a streamed response body; the flag says whether more was left unread."""
    parts: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        room = limit - total
        if len(chunk) > room:
            parts.append(chunk[:room])
            return b"".join(parts), True
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts), False


# --- S3's XML errors ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3ErrorInfo:
    """The parts of an S3 `<Error>` body we use; `extra` holds a few optional elements (Header, MaxSizeAllowed...)."""

    code: str | None
    message: str | None
    extra: dict[str, str] = field(default_factory=dict)


_XML_ESCAPES: Final = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&"))
_EXTRA_ELEMENTS: Final = ("Header", "Expires", "ServerTime", "MaxSizeAllowed", "ProposedSize", "Endpoint")


def _element(text: str, name: str) -> str | None:
    match = re.search(rf"<{name}>([^<]{{0,2000}})</{name}>", text)
    if not match:
        return None
    value = match.group(1)
    for escaped, plain in _XML_ESCAPES:
        value = value.replace(escaped, plain)
    return for_agent(value, 300) or None


def parse_s3_error(body: bytes) -> S3ErrorInfo | None:
    """Parse an S3 `<Error><Code/><Message/>...</Error>` body read with `read_bounded`.

    No XML parser runs: the fields are read with bounded regular expressions, and a body with a DOCTYPE or
    ENTITY declaration is not read at all. None when the body is not an S3 error (HTML, empty, JSON).
    """
    head = body[:ERROR_BODY_LIMIT]
    lowered = head.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered or b"<error>" not in lowered:
        return None
    text = head.decode("utf-8", errors="replace")
    code = _element(text, "Code")
    message = _element(text, "Message")
    if code is None and message is None:
        return None
    extra = {name: value for name in _EXTRA_ELEMENTS if (value := _element(text, name)) is not None}
    return S3ErrorInfo(code=code, message=message, extra=extra)


def _url_secrets(url: str) -> tuple[str, ...]:
    """The values of a presigned URL's credential parameters (signature, credential, token)."""
    query = url.split("?", 1)[1] if "?" in url else ""
    return tuple(v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() in SENSITIVE_QUERY_PARAMS)


def _is_expired(info: S3ErrorInfo | None) -> bool:
    if info is None:
        return False
    message = (info.message or "").lower()
    return info.code in ("AccessDenied", "ExpiredToken", "RequestExpired") and (
        "expired" in message or "Expires" in info.extra or info.code != "AccessDenied"
    )


def upload_failure(
    status: int, body: bytes, headers: httpx2.Headers, *, target: UploadTarget, content_type: str
) -> AttemptFailure:
    """Classify a non-2xx answer to the PUT and build the error the caller sees if it is final."""
    info = parse_s3_error(body)
    code = info.code if info else None
    s3_said = f"{status} {code}" if code else f"HTTP {status}"
    if info and info.message:
        # S3's text may echo parts of the request: never the URL's own credentials.
        s3_said += f": {redact(info.message, _url_secrets(target.upload_url))}"
    name = target.filename or "the file"
    nothing = "nothing was imported"
    if 300 <= status < 400:
        location = headers.get("location")
        where = f" to {redact_url(location)}" if location else ""
        return AttemptFailure(
            Condition.HTTP_3XX,
            UploadRejectedError(
                f"the upload URL answered with a redirect (HTTP {status}){where}, which is not followed: a "
                f"presigned upload must not move; {nothing}. Request a new upload URL",
                status=status,
            ),
        )
    if code == "SignatureDoesNotMatch":
        return AttemptFailure(
            Condition.SIGNATURE_MISMATCH,
            UploadSignatureMismatchError(
                f"the upload of {name} was refused ({s3_said}). Likely cause: the Content-Type sent "
                f"({content_type!r}) differs from the signed one; {nothing}",
                status=status,
            ),
        )
    if status == 403 and _is_expired(info):
        return AttemptFailure(
            Condition.URL_EXPIRED,
            UploadUrlExpiredError(
                f"the upload URL for {name} expired before the upload started ({s3_said}); {nothing}. Request "
                f"one new upload URL and upload again (import {target.import_id} stays 'uninitialised')",
                status=status,
            ),
        )
    if code == "EntityTooLarge":
        limit = info.extra.get("MaxSizeAllowed") if info else None
        cap = f" (at most {limit} bytes per upload)" if limit else ""
        return AttemptFailure(
            Condition.ENTITY_TOO_LARGE,
            UploadTooLargeError(
                f"{name} is too large for one upload{cap} ({s3_said}); {nothing}. Split it into smaller files",
                status=status,
            ),
        )
    if status >= 500 and status != 501:  # 501 NotImplemented: a header we sent (our bug), refused below
        condition = {500: Condition.HTTP_500, 503: Condition.HTTP_503}.get(status, Condition.OTHER_5XX)
        return AttemptFailure(
            condition,
            UploadFailedError(
                f"the upload of {name} failed: the storage service answered {s3_said}; {nothing}. Try again "
                "in a minute",
                status=status,
            ),
            retry_after=parse_retry_after(headers.get("retry-after")),
        )
    header = info.extra.get("Header") if info else None
    about = f" (header {header})" if header else ""
    return AttemptFailure(
        Condition.OTHER_5XX if status >= 500 else Condition.OTHER_4XX,
        UploadRejectedError(
            f"the upload of {name} was refused ({s3_said}){about}; {nothing}. This is likely a bug in "
            "prolific-datasets-mcp: please report it",
            status=status,
        ),
    )


_TRANSPORT_WHAT: Final = {
    Condition.CONNECT_ERROR: "could not connect to the upload host",
    Condition.CONNECT_TIMEOUT: "connecting to the upload host timed out",
    Condition.POOL_TIMEOUT: "no connection was free for the upload in time",
    Condition.WRITE_TIMEOUT: "sending the file stalled (write timeout)",
    Condition.RESET: "the connection to the upload host was closed during the upload",
}


def _transport_failure(exc: httpx2.HTTPError, target: UploadTarget) -> AttemptFailure | UploadFailedError:
    """The failure to retry or not for a transport exception; an unclassified one is final at once."""
    condition = condition_for_exception(exc)
    name = target.filename or "the file"
    if condition is None:
        return UploadFailedError(
            f"the upload of {name} failed ({type(exc).__name__}); nothing was imported. Upload it again; if "
            "this repeats, please report it",
        )
    if condition is Condition.READ_TIMEOUT:
        return AttemptFailure(
            condition,
            UploadFailedError(
                f"{name} was sent but the upload host did not answer in time: the outcome is unknown. If import "
                f"{target.import_id} stays 'uninitialised', upload again",
                import_id=target.import_id or "",
            ),
        )
    return AttemptFailure(
        condition,
        UploadFailedError(f"the upload of {name} failed: {_TRANSPORT_WHAT[condition]}; nothing was imported"),
    )


# --- reading the file --------------------------------------------------------------------------------------------


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...


class _Reader:
    """Positional reads from a path (opened here, closed at the end), a descriptor or a file object.

    A descriptor (or a file object with one) is read with `os.pread`, so its offset is not moved and the
    file is never reopened by path; a file object without one is read with seek + read.

    Reads run in the reader's own thread, one at a time and in the order asked, so that the next chunk is read
    (and hashed) while the current one is sent: the PUT then takes as long as the slower of the two, not their sum
    (docs/performance.md, goal 1). `aclose` waits for a read in flight (off the event loop) before it closes the file.
    """

    def __init__(self, fd: int | None, fileobj: BinaryIO | None, owned: bool) -> None:
        self._fd = fd
        self._fileobj = fileobj
        self._owned = owned
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="put-reader")

    @classmethod
    async def open(cls, source: FileSource) -> _Reader:
        if isinstance(source, int):
            return cls(source, None, owned=False)
        if isinstance(source, str | os.PathLike):
            flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
            try:
                fd = await anyio.to_thread.run_sync(os.open, os.fspath(source), flags)
            except OSError as exc:
                raise UploadError(
                    f"the file {os.path.basename(os.fspath(source))!r} could not be opened for the upload "
                    f"({exc.strerror or type(exc).__name__}); nothing was sent"
                ) from None
            return cls(fd, None, owned=True)
        try:
            return cls(source.fileno(), None, owned=False)
        except (AttributeError, OSError, ValueError):
            return cls(None, source, owned=False)

    def _read_at(self, offset: int, count: int) -> bytes:
        parts: list[bytes] = []
        while count > 0:
            if self._fd is not None:
                if hasattr(os, "pread"):
                    chunk = os.pread(self._fd, count, offset)
                else:  # Windows: no pread
                    os.lseek(self._fd, offset, os.SEEK_SET)
                    chunk = os.read(self._fd, count)
            else:
                assert self._fileobj is not None
                self._fileobj.seek(offset)
                chunk = self._fileobj.read(count)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
            count -= len(chunk)
        return b"".join(parts)

    def _read_hashed(self, offset: int, count: int, digest: _Hash | None, hashed: int) -> bytes:
        chunk = self._read_at(offset, count)
        if digest is not None:
            digest.update(chunk[:hashed])
        return chunk

    def start_read(self, offset: int, count: int, digest: _Hash | None = None, hashed: int = 0) -> Future[bytes]:
        """Begin reading `count` bytes at `offset` (and hashing the first `hashed` of them into `digest`, after
        every read begun before it)."""
        return self._thread.submit(self._read_hashed, offset, count, digest, hashed)

    async def result(self, read: Future[bytes]) -> bytes:
        """The bytes of a read begun with `start_read`."""
        try:
            return await anyio.to_thread.run_sync(read.result)
        except OSError as exc:
            raise UploadError(
                f"the file could not be read during the upload ({exc.strerror or type(exc).__name__}); nothing "
                "was imported. Check the file and upload it again"
            ) from None

    async def read_at(self, offset: int, count: int) -> bytes:
        return await self.result(self.start_read(offset, count))

    async def aclose(self) -> None:
        """Wait (off the event loop, even when cancelled) for a read in flight, then close what was opened here: no
        read may be left on a closed descriptor."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(partial(self._thread.shutdown, wait=True, cancel_futures=True))
        if self._owned and self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class _Progress:
    """Calls `on_progress` with strictly increasing counts (a retry starts again at 0 but reports nothing new)."""

    def __init__(self, callback: ProgressCallback | None, size: int) -> None:
        self._callback = callback
        self._size = size
        self._reported = 0

    async def __call__(self, sent: int) -> None:
        if self._callback is None or sent <= self._reported:
            return
        self._reported = sent
        result = self._callback(sent, self._size)
        if result is not None:
            await result


async def _body(
    reader: _Reader,
    size: int,
    chunk_size: int,
    progress: _Progress,
    expected_sha256: str | None = None,
    pace: Pacer | None = None,
) -> AsyncIterator[bytes]:
    """Yield the file's `size` bytes, hashing them as they go; raise FileChangedError before the last byte if the
    file is shorter or longer, and FileEditedError if the bytes sent do not hash to `expected_sha256` (the file
    was edited in place at the same size). `pace` is awaited before each chunk goes out (see Pacer). The next
    chunk is read, and hashed, while this one is sent."""
    digest = hashlib.sha256() if expected_sha256 is not None else None
    if size == 0 and await reader.read_at(0, 1):
        raise FileChangedError(0, 1, grew=True)

    def start(offset: int) -> Future[bytes]:
        want = min(chunk_size, size - offset)
        # The last read asks for one byte more: a file that grew is caught before its final chunk goes out,
        # so the server never receives a complete body.
        return reader.start_read(offset, want + 1 if offset + want >= size else want, digest, want)

    offset = 0
    ahead = start(0) if size > 0 else None
    while ahead is not None:
        want = min(chunk_size, size - offset)
        last = offset + want >= size
        chunk = await reader.result(ahead)
        ahead = None if last else start(offset + want)
        if len(chunk) > want:
            raise FileChangedError(size, offset + len(chunk), grew=True)
        if len(chunk) < want:
            raise FileChangedError(size, offset + len(chunk), grew=False)
        # Checked before the final chunk goes out, so an edited file never reaches the store whole.
        if last and digest is not None and digest.hexdigest() != expected_sha256:
            raise FileEditedError(size)
        if pace is not None:
            await pace(offset + want, last)
        offset += want
        await progress(offset)
        yield chunk


async def put_presigned(
    http: httpx2.AsyncClient,
    target: UploadTarget,
    source: FileSource,
    *,
    size: int,
    content_type: str | None,
    on_progress: ProgressCallback | None,
    chunk_size: int,
    timing: Timing,
    deadline: float,
    sandbox: bool,
    expected_sha256: str | None = None,
    pace: Pacer | None = None,
) -> PutResult:
    """PUT `size` bytes of `source` to `target.upload_url` with the S3_PUT retry rule; see ProlificClient.put_file.

    With `expected_sha256` (the pre-flight's hash), the bytes are hashed as they are sent and a mismatch stops the
    PUT before its last chunk (FileEditedError)."""
    url = check_upload_url(target.upload_url, sandbox=sandbox)
    if target.http_method.upper() != "PUT":
        raise UnexpectedResponseError(
            f"the upload URL asks for HTTP method {for_agent(target.http_method, 20)!r}; only PUT is supported. "
            "Please report this"
        )
    ctype = content_type or target.content_type
    if not ctype:
        raise UnexpectedResponseError(
            "Prolific gave no content type for the upload and none follows from the file name: upload a .jsonl "
            "or .csv file"
        )
    if size < 0 or chunk_size <= 0:
        raise ValueError("size must be >= 0 and chunk_size > 0")
    progress = _Progress(on_progress, size)
    reader = await _Reader.open(source)

    async def attempt(number: int) -> PutResult:
        request = http.build_request(
            "PUT",
            url,
            content=_body(reader, size, chunk_size, progress, expected_sha256, pace),
            headers={"Content-Type": ctype, "Content-Length": str(size)},
        )
        for name in ("authorization", "user-agent", "cookie"):
            request.headers.pop(name, None)
        check_fixed_length(request, size)
        try:
            response = await http.send(request, stream=True)
        except httpx2.HTTPError as exc:
            raise _transport_failure(exc, target) from None
        try:
            if 200 <= response.status_code < 300:
                with contextlib.suppress(httpx2.HTTPError):  # the status is what counts; the body is empty
                    await read_bounded(response, ERROR_BODY_LIMIT)
                return PutResult(
                    status_code=response.status_code,
                    bytes_sent=size,
                    attempts=number,
                    etag=response.headers.get("etag"),
                )
            try:
                body, _ = await read_bounded(response, ERROR_BODY_LIMIT)
            except httpx2.HTTPError:
                body = b""
            raise upload_failure(response.status_code, body, response.headers, target=target, content_type=ctype)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
                await response.aclose()

    try:
        result, _ = await call_with_retries(CallKind.S3_PUT, attempt, timing=timing, deadline=deadline)
        return result
    except AmbiguousOutcome as outcome:
        error: ProlificError = outcome.failure.error
        error.note_attempts(outcome.attempts)
        raise error from None
    finally:
        await reader.aclose()
