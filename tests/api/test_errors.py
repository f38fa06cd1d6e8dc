"""Error messages: Prolific's envelope, the status mapping, S3's XML errors, redaction."""

from __future__ import annotations

import httpx2
import orjson
import pytest

from prolific_mcp.api.errors import (
    AmbiguousCreateError,
    AmbiguousUploadUrlError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FileChangedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RedirectRefusedError,
    Resource,
    ServerError,
    UploadFailedError,
    UploadRejectedError,
    UploadSignatureMismatchError,
    UploadTooLargeError,
    UploadUrlExpiredError,
    error_for_status,
    parse_error_envelope,
)
from prolific_mcp.api.models import UploadTarget
from prolific_mcp.api.retry import Condition
from prolific_mcp.api.s3 import ERROR_BODY_LIMIT, parse_s3_error, upload_failure
from prolific_mcp.redaction import register_secret
from prolific_mcp.text import for_agent

from .conftest import SENTINEL, SIGNATURE, assert_exception_clean, s3_xml

DATASET = Resource("dataset", "ds-1")


def envelope(detail: object, **extra: object) -> bytes:
    return orjson.dumps(
        {"error": {"status": 400, "error_code": 140001, "title": "Invalid request", "detail": detail, **extra}}
    )


# --- Prolific's error envelope ------------------------------------------------------------------------------------


def test_envelope_detail_as_string_list_and_field_map() -> None:
    as_str = parse_error_envelope(envelope("name is required"))
    assert as_str is not None and as_str.details == ("name is required",)
    as_list = parse_error_envelope(envelope(["one", "two"]))
    assert as_list is not None and as_list.details == ("one", "two")
    as_map = parse_error_envelope(envelope({"schema": ["too many fields"], "name": ["blank", "too long"]}))
    assert as_map is not None
    assert as_map.details == ("schema: too many fields", "name: blank", "name: too long")
    assert as_map.title == "Invalid request"
    assert as_map.error_code == 140001


def test_envelope_never_shows_the_traceback_but_keeps_additional_information() -> None:
    body = envelope(
        "bad", traceback="Traceback (most recent call last): SECRET-INTERNALS", additional_information="see docs"
    )
    parsed = parse_error_envelope(body)
    assert parsed is not None
    assert "SECRET-INTERNALS" not in parsed.summary()
    assert "see docs" in parsed.summary()
    error = error_for_status(400, body, resource=DATASET)
    assert "SECRET-INTERNALS" not in str(error)
    assert "Invalid request" in str(error)


@pytest.mark.parametrize("body", [b"", b"<html>502</html>", b"[1,2]", b'{"message": "x"}', b"\xff\xfe"])
def test_non_envelopes_are_none(body: bytes) -> None:
    assert parse_error_envelope(body) is None


def test_bare_detail_object_is_accepted() -> None:
    parsed = parse_error_envelope(b'{"detail": "Authentication credentials were not provided."}')
    assert parsed is not None and parsed.details == ("Authentication credentials were not provided.",)


# --- status mapping ----------------------------------------------------------------------------------------------


def test_401_says_how_to_fix_the_token() -> None:
    error = error_for_status(401, b"", resource=DATASET)
    assert isinstance(error, AuthenticationError)
    assert str(error) == (
        "the token was rejected (HTTP 401): set PROLIFIC_TOKEN to a valid API token from Prolific "
        "(Settings → API tokens)"
    )
    assert "no API token was sent" in str(error_for_status(401, b"", resource=DATASET, has_token=False))


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (Resource("dataset", "ds-1"), "the dataset ds-1 was not found"),
        (Resource("import", "imp-1", "ds-1"), "the import imp-1 of dataset ds-1 was not found: check both ids"),
        (Resource("migration", "job-1", "ds-1"), "the schema migration job-1 of dataset ds-1 was not found"),
        (Resource("workspace", "ws-1"), "the workspace ws-1 was not found"),
    ],
)
def test_404_is_resource_aware(resource: Resource, expected: str) -> None:
    error = error_for_status(404, b"", resource=resource)
    assert isinstance(error, NotFoundError)
    assert str(error).startswith(expected)
    assert error.resource == resource and error.status == 404


def test_other_statuses() -> None:
    assert isinstance(error_for_status(403, b"", resource=DATASET), PermissionDeniedError)
    bad = error_for_status(422, envelope({"schema": ["unknown type 'sound'"]}), resource=DATASET)
    assert isinstance(bad, BadRequestError)
    assert bad.details == ("schema: unknown type 'sound'",)
    assert "schema: unknown type 'sound'" in str(bad) and bad.status == 422
    conflict = error_for_status(409, b"", resource=DATASET, conflict_hint="wait for the import")
    assert isinstance(conflict, ConflictError) and str(conflict).endswith("wait for the import")
    limited = error_for_status(429, b"", resource=DATASET, retry_after=2.2)
    assert isinstance(limited, RateLimitedError)
    assert str(limited) == "rate-limited by Prolific: retry after 3 s" and limited.retry_after == 3.0
    assert isinstance(error_for_status(503, b"", resource=DATASET), ServerError)
    redirect = error_for_status(302, b"", resource=DATASET)
    assert isinstance(redirect, RedirectRefusedError) and "not followed" in str(redirect)


def test_messages_are_cleaned_and_redacted() -> None:
    register_secret(SENTINEL)
    body = envelope(f"token {SENTINEL} \x1b[31mred\u202e\u200b and\nnewline", title="Bad\x00 title")
    error = error_for_status(400, body, resource=DATASET)
    text = str(error)
    assert SENTINEL not in text and "REDACTED" in text
    assert not any(ch in text for ch in "\x1b\u202e\u200b\x00\n")
    assert_exception_clean(error)


def test_for_agent_shortens_to_one_line() -> None:
    assert for_agent("x" * 1000, 10) == "x" * 9 + "…"
    assert for_agent("a\t b\r\n c", 300) == "a b c"


def test_error_repr_and_attempts_note() -> None:
    error = ServerError("Prolific failed", status=500)
    assert repr(error) == "ServerError('Prolific failed')"
    error.note_attempts(3)
    error.note_attempts(3)
    assert str(error) == "Prolific failed (3 attempts)" and error.attempts == 3


def test_ambiguous_messages_say_what_to_check() -> None:
    from datetime import UTC, datetime

    create = AmbiguousCreateError("reviews", datetime(2026, 9, 1, 12, 0, tzinfo=UTC), "Prolific did not answer in time")
    assert str(create) == (
        "the dataset may have been created ('reviews', 2026-09-01 12:00:00 UTC): Prolific did not answer in time. "
        "Check before creating it again"
    )
    orphan = AmbiguousUploadUrlError("ds-1", "a.jsonl", "the connection was closed", ["imp-9"])
    assert "imp-9" in str(orphan) and orphan.orphan_import_ids == ("imp-9",)
    unknown = AmbiguousUploadUrlError("ds-1", "a.jsonl", "the connection was closed", None)
    assert "could not be checked" in str(unknown) and unknown.orphan_import_ids is None


def test_file_changed_message() -> None:
    assert str(FileChangedError(100, 40, grew=False)).startswith("the file changed during upload, nothing was imported")
    assert "grew beyond the 100 bytes" in str(FileChangedError(100, 101, grew=True))


# --- S3's XML errors ---------------------------------------------------------------------------------------------


def test_parse_s3_error_reads_code_message_and_extras() -> None:
    body = s3_xml(
        "AccessDenied", "Request has expired", Expires="2026-01-01T00:00:00Z", ServerTime="2026-01-01T00:20:00Z"
    )
    info = parse_s3_error(body)
    assert info is not None
    assert (info.code, info.message) == ("AccessDenied", "Request has expired")
    assert info.extra == {"Expires": "2026-01-01T00:00:00Z", "ServerTime": "2026-01-01T00:20:00Z"}
    escaped = parse_s3_error(s3_xml("InvalidArgument", "a &amp; b &lt;c&gt;"))
    assert escaped is not None and escaped.message == "a & b <c>"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>502 Bad Gateway</body></html>",
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x "boom">]><Error><Code>&x;</Code></Error>',
        b'<!ENTITY lol "lol"><Error><Code>X</Code></Error>',
        b"<Error></Error>",
        b'{"error": "json"}',
    ],
)
def test_parse_s3_error_refuses_non_errors_and_entities(body: bytes) -> None:
    assert parse_s3_error(body) is None


def test_parse_s3_error_only_looks_at_the_first_64_kib() -> None:
    late = b"<Error>" + b" " * ERROR_BODY_LIMIT + b"<Code>Late</Code></Error>"
    assert parse_s3_error(late) is None


def _target() -> UploadTarget:
    return UploadTarget.from_api(
        {"upload_url": f"https://s3.example/k?X-Amz-Signature={SIGNATURE}", "import_id": "imp-1"},
        filename="data.jsonl",
        dataset_id="ds-1",
    )


@pytest.mark.parametrize(
    ("status", "body", "condition", "cls", "text"),
    [
        (
            403,
            s3_xml("SignatureDoesNotMatch", "The request signature we calculated does not match", StringToSign="PUT"),
            Condition.SIGNATURE_MISMATCH,
            UploadSignatureMismatchError,
            "likely cause: the content-type sent ('text/plain') differs from the signed one",
        ),
        (403, s3_xml("AccessDenied", "Request has expired"), Condition.URL_EXPIRED, UploadUrlExpiredError, "expired"),
        (403, s3_xml("AccessDenied", "Access Denied"), Condition.OTHER_4XX, UploadRejectedError, "403 accessdenied"),
        (
            400,
            s3_xml("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", MaxSizeAllowed="5"),
            Condition.ENTITY_TOO_LARGE,
            UploadTooLargeError,
            "at most 5 bytes per upload",
        ),
        (
            400,
            s3_xml("InvalidArgument", "Only one auth mechanism allowed"),
            Condition.OTHER_4XX,
            UploadRejectedError,
            "only one auth",
        ),
        (
            411,
            s3_xml("MissingContentLength", "You must provide the Content-Length HTTP header."),
            Condition.OTHER_4XX,
            UploadRejectedError,
            "411",
        ),
        (
            501,
            s3_xml(
                "NotImplemented",
                "A header you provided implies functionality that is not implemented",
                Header="Transfer-Encoding",
            ),
            Condition.OTHER_5XX,
            UploadRejectedError,
            "header transfer-encoding",
        ),
        (
            503,
            s3_xml("SlowDown", "Please reduce your request rate."),
            Condition.HTTP_503,
            UploadFailedError,
            "503 slowdown",
        ),
        (
            500,
            s3_xml("InternalError", "We encountered an internal error."),
            Condition.HTTP_500,
            UploadFailedError,
            "500",
        ),
        (502, b"<html>bad gateway</html>", Condition.OTHER_5XX, UploadFailedError, "http 502"),
        (403, b"", Condition.OTHER_4XX, UploadRejectedError, "http 403"),
        (307, b"", Condition.HTTP_3XX, UploadRejectedError, "redirect (http 307)"),
    ],
)
def test_upload_failure_mapping(status: int, body: bytes, condition: Condition, cls: type, text: str) -> None:
    failure = upload_failure(status, body, httpx2.Headers({}), target=_target(), content_type="text/plain")
    assert failure.condition is condition
    assert type(failure.error) is cls
    assert text in str(failure.error).lower()
    assert "nothing was imported" in str(failure.error)
    assert_exception_clean(failure.error)


def test_upload_failure_redirect_location_is_redacted() -> None:
    headers = httpx2.Headers({"Location": f"https://elsewhere.example/k?X-Amz-Signature={SIGNATURE}"})
    failure = upload_failure(307, b"", headers, target=_target(), content_type="text/csv")
    assert "elsewhere.example" in str(failure.error)
    assert_exception_clean(failure.error)


def test_upload_failure_503_carries_retry_after() -> None:
    headers = httpx2.Headers({"Retry-After": "4"})
    failure = upload_failure(503, s3_xml("SlowDown", "slow"), headers, target=_target(), content_type="text/csv")
    assert failure.retry_after == 4.0
