"""The client's exceptions: one small hierarchy, each message written for an agent to act on.

Every message goes through `redact` (the token, presigned signatures) and has control characters removed, so
`str(exc)` can go back to an MCP client as is. Text taken from Prolific (an error envelope's `title`, `detail`,
`additional_information`) is shortened and cleaned; its `traceback` is never shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from prolific_mcp.text import for_agent

__all__ = [
    "AmbiguousCreateError",
    "AmbiguousRequestError",
    "AmbiguousSchemaUpdateError",
    "AmbiguousUploadUrlError",
    "ApiUnreachableError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ErrorEnvelope",
    "FileChangedError",
    "InvalidFilenameError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProlificError",
    "RateLimitedError",
    "RedirectRefusedError",
    "Resource",
    "ServerError",
    "UnexpectedResponseError",
    "UnsafeUploadUrlError",
    "UploadError",
    "UploadFailedError",
    "UploadRejectedError",
    "UploadSignatureMismatchError",
    "UploadTooLargeError",
    "UploadUrlExpiredError",
    "error_for_status",
    "parse_error_envelope",
]

STATUS_PAGE = "https://status.prolific.com"


class ProlificError(Exception):
    """Base of every error the client raises. `message` says what was wrong and what to do.

    `status` is the HTTP status when there was one; `attempts` counts the HTTP attempts made.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.message = for_agent(message, 2000)
        self._first_message = self.message
        self.status = status
        self.attempts = 1
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def note_attempts(self, attempts: int) -> None:
        """Record that the call was tried `attempts` times, and say so in the message when more than once."""
        self.attempts = attempts
        self.message = f"{self._first_message} ({attempts} attempts)" if attempts > 1 else self._first_message
        self.args = (self.message,)


@dataclass(frozen=True, slots=True)
class Resource:
    """What a call is about, for messages: a kind ('dataset', 'import', ...) and the ids involved."""

    kind: str
    id: str | None = None
    dataset_id: str | None = None

    def describe(self) -> str:
        of = f" of dataset {self.dataset_id}"
        named = {
            "dataset": f"dataset {self.id}",
            "import": f"import {self.id}{of}",
            "migration": f"schema migration {self.id}{of}",
            "workspace": f"workspace {self.id}",
        }
        return named.get(self.kind) or (f"{self.kind} {self.id}" if self.id else self.kind)

    def not_found(self) -> str:
        """What was not found, as a fact (the operations layer adds which tool helps)."""
        if self.kind in ("dataset", "import", "migration", "workspace"):
            return f"the {self.describe()} was not found" + (": check both ids" if self.kind == "import" else "")
        return f"Prolific has no {self.describe()} (HTTP 404): check PROLIFIC_URL (normally https://api.prolific.com)"


@dataclass(frozen=True, slots=True)
class ErrorEnvelope:
    """Prolific's error body `{"error": {status, error_code, title, detail, additional_information?}}`."""

    title: str | None
    details: tuple[str, ...]
    additional_information: str | None
    error_code: int | str | None

    def summary(self) -> str:
        parts = [p for p in (self.title, "; ".join(self.details), self.additional_information) if p]
        return for_agent(": ".join(parts), 800)


def _flatten_detail(detail: object) -> list[str]:
    if detail is None:
        return []
    if isinstance(detail, str):
        return [for_agent(detail, 300)]
    if isinstance(detail, Mapping):
        out: list[str] = []
        for field, messages in detail.items():
            for message in _flatten_detail(messages):
                out.append(for_agent(f"{field}: {message}", 300))
        return out
    if isinstance(detail, Sequence):
        return [m for item in detail for m in _flatten_detail(item)]
    return [for_agent(detail, 300)]


def parse_error_envelope(body: bytes) -> ErrorEnvelope | None:
    """Parse Prolific's error envelope (or a bare `{"detail": ...}`); None when the body is neither."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    inner = data.get("error")
    if not isinstance(inner, dict):
        if "detail" in data or "title" in data:
            inner = data
        else:
            return None
    title = inner.get("title")
    info = inner.get("additional_information")
    code = inner.get("error_code")
    return ErrorEnvelope(
        title=for_agent(title, 300) if isinstance(title, str) and title.strip() else None,
        details=tuple(d for d in _flatten_detail(inner.get("detail")) if d),
        additional_information=for_agent(info, 300) if isinstance(info, str) and info.strip() else None,
        error_code=code if isinstance(code, int | str) else None,
    )


# --- Prolific API errors ---------------------------------------------------------------------------------------


class AuthenticationError(ProlificError):
    """401: the token is missing or was rejected."""


class PermissionDeniedError(ProlificError):
    """403: the token's account may not use this resource."""


class NotFoundError(ProlificError):
    """404, with a hint that depends on the resource (`resource`)."""

    def __init__(self, message: str, *, resource: Resource, status: int | None = 404) -> None:
        super().__init__(message, status=status)
        self.resource = resource


class BadRequestError(ProlificError):
    """400/422 (and other 4xx): Prolific refused the request; `details` holds the envelope's `detail` lines."""

    def __init__(self, message: str, *, status: int | None = 400, details: Sequence[str] = ()) -> None:
        super().__init__(message, status=status)
        self.details = tuple(details)


class ConflictError(ProlificError):
    """409: e.g. an append while an import or a schema migration runs on the dataset."""


class RateLimitedError(ProlificError):
    """429, or a retry wait that would pass the call's deadline: `retry_after` seconds, when known."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after

    @classmethod
    def after(cls, seconds: float | None, *, status: int | None = 429) -> RateLimitedError:
        """The standard message: 'rate-limited by Prolific: retry after N s'."""
        if seconds is None:
            return cls("rate-limited by Prolific: retry in a minute", retry_after=None, status=status)
        whole = max(1, int(-(-seconds // 1)))
        return cls(f"rate-limited by Prolific: retry after {whole} s", retry_after=float(whole), status=status)


class ServerError(ProlificError):
    """5xx from Prolific."""


class ApiUnreachableError(ProlificError):
    """Prolific could not be reached or did not answer in time (connect errors, timeouts, resets)."""


class RedirectRefusedError(ProlificError):
    """A 3xx from the API: redirects are never followed (the token must not go anywhere else)."""


class UnexpectedResponseError(ProlificError):
    """A 2xx whose body is not what the API documents: malformed JSON, a missing required field."""


class InvalidFilenameError(ProlificError, ValueError):
    """A filename that cannot be sent as one path segment (empty, '.', '..', NUL or control characters)."""


class AmbiguousRequestError(ProlificError):
    """A write whose outcome is unknown (the request left, no answer came back): check before repeating it."""


class AmbiguousCreateError(AmbiguousRequestError):
    """POST dataset failed after the request was sent: the dataset may exist."""

    def __init__(self, name: str, started_at: datetime, cause: str) -> None:
        when = started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        super().__init__(
            f"the dataset may have been created ({name!r}, {when}): {cause}. Check before creating it again"
        )
        self.name = name
        self.started_at = started_at


class AmbiguousSchemaUpdateError(AmbiguousRequestError):
    """PATCH schema failed after the request was sent: the new schema may be in place."""

    def __init__(self, dataset_id: str, cause: str) -> None:
        super().__init__(
            f"the schema change to dataset {dataset_id} may have been applied: {cause}. Check the dataset's "
            "schema before sending it again"
        )
        self.dataset_id = dataset_id


class AmbiguousUploadUrlError(AmbiguousRequestError):
    """GET upload-url failed after the request was sent: it may have created an `uninitialised` import.

    `orphan_import_ids` lists the `uninitialised` imports found on the dataset since the call started, or is
    None when the dataset could not be checked.
    """

    def __init__(self, dataset_id: str, filename: str, cause: str, orphan_import_ids: Sequence[str] | None) -> None:
        if orphan_import_ids is None:
            found = "the dataset could not be checked for new 'uninitialised' imports, which would be harmless orphans"
        elif orphan_import_ids:
            found = (
                f"it created the import(s) {', '.join(orphan_import_ids)}, which will stay 'uninitialised' "
                "(harmless orphans)"
            )
        else:
            found = "no new 'uninitialised' import was found on the dataset"
        super().__init__(
            f"requesting an upload URL for {filename!r} on dataset {dataset_id} may have failed after Prolific "
            f"received it: {cause}; {found}. Request a new upload URL",
        )
        self.dataset_id = dataset_id
        self.filename = filename
        self.orphan_import_ids = None if orphan_import_ids is None else tuple(orphan_import_ids)


# --- the presigned S3 PUT ----------------------------------------------------------------------------------------


class UploadError(ProlificError):
    """The PUT of a file to its presigned upload URL failed; nothing was imported unless the message says so."""


class UploadSignatureMismatchError(UploadError):
    """403 SignatureDoesNotMatch: a signed header (Content-Type) differs. Never retried."""


class UploadUrlExpiredError(UploadError):
    """403 AccessDenied 'Request has expired': request one new upload URL and PUT again.

    `expired_import_id` is the import the expired URL belonged to, when known (it stays `uninitialised`).
    """

    expired_import_id: str | None = None


class UploadTooLargeError(UploadError):
    """400 EntityTooLarge: the file is larger than one PUT allows."""


class UploadRejectedError(UploadError):
    """Any other refusal: 400 InvalidArgument, 411, 501, other 4xx, a redirect."""


class UploadFailedError(UploadError):
    """5xx or transport failures that outlasted the retries, or an upload whose outcome is unknown
    (`outcome_unknown`: the file was sent but no answer came; `import_id` tells whether it arrived)."""

    def __init__(self, message: str, *, status: int | None = None, import_id: str | None = None) -> None:
        super().__init__(message, status=status)
        self.import_id = import_id
        self.outcome_unknown = import_id is not None


class FileChangedError(UploadError):
    """The file yielded fewer or more bytes than its size when the upload started."""

    def __init__(self, expected: int, seen: int, *, grew: bool) -> None:
        how = "grew beyond" if grew else f"ended at {seen:,} of"
        super().__init__(
            f"the file changed during upload, nothing was imported: it {how} the {expected:,} bytes it had when "
            "the upload started. Upload it again once it no longer changes"
        )
        self.expected = expected
        self.seen = seen


class FileEditedError(FileChangedError):
    """The file kept its size but its bytes no longer hash to the sha256 the pre-flight checked (edited in place)."""

    def __init__(self, size: int) -> None:
        UploadError.__init__(
            self,
            "the file changed during upload, nothing was imported: it was edited in place (same size, different "
            "bytes from those checked before the upload). Upload it again once it no longer changes",
        )
        self.expected = size
        self.seen = size


class UnsafeUploadUrlError(UploadError):
    """The upload URL Prolific returned is refused before any byte is sent (scheme, host, userinfo)."""


# --- mapping an HTTP status to an API error ---------------------------------------------------------------------


def error_for_status(
    status: int,
    body: bytes,
    *,
    resource: Resource,
    retry_after: float | None = None,
    has_token: bool = True,
    conflict_hint: str | None = None,
) -> ProlificError:
    """The typed error for a non-2xx API answer; `body` is the (bounded) error body."""
    envelope = parse_error_envelope(body)
    said = f": Prolific says: {envelope.summary()}" if envelope and envelope.summary() else ""
    what = resource.describe()
    if 300 <= status < 400:
        return RedirectRefusedError(
            f"Prolific answered {what} with a redirect (HTTP {status}), which is not followed so that the token "
            "never goes to another address: check PROLIFIC_URL (normally https://api.prolific.com)",
            status=status,
        )
    if status == 401:
        if not has_token:
            return AuthenticationError(
                "no API token was sent (HTTP 401): set PROLIFIC_TOKEN to an API token from Prolific "
                "(Settings → API tokens)",
                status=status,
            )
        return AuthenticationError(
            "the token was rejected (HTTP 401): set PROLIFIC_TOKEN to a valid API token from Prolific "
            "(Settings → API tokens)",
            status=status,
        )
    if status == 403:
        return PermissionDeniedError(
            f"Prolific refused access to {what} (HTTP 403){said}. The token's account may not use it: check the "
            "id, and that the account is a member of its workspace",
            status=status,
        )
    if status == 404:
        return NotFoundError(f"{resource.not_found()}{said}", resource=resource)
    if status == 409:
        hint = conflict_hint or "wait for the running operation on it to finish, then try again"
        return ConflictError(f"Prolific refused the change to {what} (HTTP 409){said}: {hint}", status=status)
    if status == 429:
        return RateLimitedError.after(retry_after)
    if status >= 500:
        return ServerError(
            f"Prolific failed on {what} (HTTP {status}){said}: try again in a minute; if it persists, check "
            f"{STATUS_PAGE}",
            status=status,
        )
    details = envelope.details if envelope else ()
    return BadRequestError(
        f"Prolific rejected the request for {what} (HTTP {status}){said}. Fix the request and try again",
        status=status,
        details=details,
    )
