"""What each kind of call retries on: the one retry table (docs/architecture.md, Retries; kept equal to
docs/retries.md), backoff, `Retry-After`, and the loop that applies them.

Each failure is classified as one `Condition`. For a given `CallKind`, every condition is in exactly one of three
sets: retried (with full-jitter backoff), never retried (the error is final), or ambiguous (the request may
have taken effect: the caller reconciles instead of retrying). A test checks that the sets partition the
conditions, and another that docs/retries.md shows the same table.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, TypeVar

import httpx2

from prolific_mcp.api.errors import ProlificError, RateLimitedError

__all__ = [
    "API_CONDITIONS",
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "CALL_BUDGET",
    "RETRY_TABLE",
    "S3_CONDITIONS",
    "AmbiguousOutcome",
    "AttemptFailure",
    "CallKind",
    "Condition",
    "Decision",
    "RetryRule",
    "Timing",
    "backoff_delay",
    "call_with_retries",
    "condition_for_exception",
    "condition_for_status",
    "parse_retry_after",
]

BACKOFF_BASE: Final = 0.5
"""Seconds: the first retry waits up to this long (full jitter)."""
BACKOFF_CAP: Final = 20.0
"""Seconds: no backoff step is longer than this."""
CALL_BUDGET: Final = 30.0
"""Seconds: a call's retries end this long after it started (or earlier, at the caller's deadline)."""


class CallKind(StrEnum):
    """The kinds of call whose failures are handled differently."""

    READ = "READ"
    CREATE = "CREATE"
    UPLOAD_URL = "UPLOAD_URL"
    APPEND = "APPEND"
    S3_PUT = "S3_PUT"


class Condition(StrEnum):
    """One way an attempt can fail; the value is the token docs/retries.md uses."""

    CONNECT_ERROR = "connect-error"
    CONNECT_TIMEOUT = "connect-timeout"
    POOL_TIMEOUT = "pool-timeout"
    WRITE_TIMEOUT = "write-timeout"
    READ_TIMEOUT = "read-timeout"
    RESET = "reset"
    HTTP_3XX = "3xx"
    HTTP_429 = "429"
    OTHER_4XX = "other-4xx"
    HTTP_500 = "500"
    HTTP_502 = "502"
    HTTP_503 = "503"
    HTTP_504 = "504"
    OTHER_5XX = "other-5xx"
    SIGNATURE_MISMATCH = "SignatureDoesNotMatch"
    URL_EXPIRED = "expired"
    ENTITY_TOO_LARGE = "EntityTooLarge"


_TRANSPORT: Final = frozenset(
    {
        Condition.CONNECT_ERROR,
        Condition.CONNECT_TIMEOUT,
        Condition.POOL_TIMEOUT,
        Condition.WRITE_TIMEOUT,
        Condition.READ_TIMEOUT,
        Condition.RESET,
    }
)
NEVER_SENT: Final = frozenset({Condition.CONNECT_ERROR, Condition.CONNECT_TIMEOUT, Condition.POOL_TIMEOUT})
"""Failures after which the request surely never left: safe to retry for any call."""

API_CONDITIONS: Final = _TRANSPORT | {
    Condition.HTTP_3XX,
    Condition.HTTP_429,
    Condition.OTHER_4XX,
    Condition.HTTP_500,
    Condition.HTTP_502,
    Condition.HTTP_503,
    Condition.HTTP_504,
    Condition.OTHER_5XX,
}
"""Every condition an API call's failure is classified as."""

S3_CONDITIONS: Final = _TRANSPORT | {
    Condition.HTTP_3XX,
    Condition.OTHER_4XX,
    Condition.SIGNATURE_MISMATCH,
    Condition.URL_EXPIRED,
    Condition.ENTITY_TOO_LARGE,
    Condition.HTTP_500,
    Condition.HTTP_503,
    Condition.OTHER_5XX,
}
"""Every condition a presigned PUT's failure is classified as (S3 has no 429: it throttles with 503)."""


class Decision(StrEnum):
    RETRY = "retry"
    FAIL = "fail"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True)
class RetryRule:
    """One row of the retry table."""

    calls: str
    retry_on: frozenset[Condition]
    ambiguous: frozenset[Condition]
    max_attempts: int
    conditions: frozenset[Condition]
    """Every condition this kind of call can meet."""

    @property
    def never(self) -> frozenset[Condition]:
        """The conditions that end the call at once: neither retried nor ambiguous (derived, for the docs)."""
        return self.conditions - self.retry_on - self.ambiguous

    def decide(self, condition: Condition) -> Decision:
        if condition in self.retry_on:
            return Decision.RETRY
        if condition in self.ambiguous:
            return Decision.AMBIGUOUS
        return Decision.FAIL


_READ_RETRY: Final = _TRANSPORT | {
    Condition.HTTP_429,
    Condition.HTTP_500,
    Condition.HTTP_502,
    Condition.HTTP_503,
    Condition.HTTP_504,
}
_AFTER_SENDING: Final = frozenset(
    {
        Condition.WRITE_TIMEOUT,
        Condition.READ_TIMEOUT,
        Condition.RESET,
        Condition.HTTP_500,
        Condition.HTTP_502,
        Condition.HTTP_503,
        Condition.HTTP_504,
        Condition.OTHER_5XX,
    }
)


def _api_rule(calls: str, *, idempotent: bool, max_attempts: int = 5) -> RetryRule:
    """An API call's row: an idempotent call is retried on every transient failure; any other only when the request
    was never sent, a failure after sending leaving its outcome unknown (ambiguous)."""
    if idempotent:
        retry_on, ambiguous = _READ_RETRY, frozenset[Condition]()
    else:
        retry_on, ambiguous = NEVER_SENT, _AFTER_SENDING
    return RetryRule(calls, retry_on, ambiguous, max_attempts, conditions=API_CONDITIONS)


RETRY_TABLE: Final[Mapping[CallKind, RetryRule]] = {
    CallKind.READ: _api_rule(
        "GET dataset, import, migration, V3 status, workspaces, users/me, batches", idempotent=True
    ),
    CallKind.CREATE: _api_rule("POST dataset, PATCH schema", idempotent=False),
    CallKind.UPLOAD_URL: _api_rule("GET upload-url (creates an import)", idempotent=False, max_attempts=2),
    CallKind.APPEND: _api_rule("POST datapoints (idempotent per the docs)", idempotent=True),
    CallKind.S3_PUT: RetryRule(
        calls="PUT to the presigned upload URL (again from byte 0)",
        retry_on=NEVER_SENT | {Condition.WRITE_TIMEOUT, Condition.RESET, Condition.HTTP_500, Condition.HTTP_503},
        ambiguous=frozenset({Condition.READ_TIMEOUT}),
        max_attempts=5,
        conditions=S3_CONDITIONS,
    ),
}
"""The retry table. docs/retries.md shows the same rows; tests/api/test_retry.py keeps the two equal."""


def condition_for_exception(exc: httpx2.HTTPError) -> Condition | None:
    """Classify a transport exception; None for one that is our own bug (e.g. LocalProtocolError)."""
    if isinstance(exc, httpx2.ConnectTimeout):
        return Condition.CONNECT_TIMEOUT
    if isinstance(exc, httpx2.PoolTimeout):
        return Condition.POOL_TIMEOUT
    if isinstance(exc, httpx2.WriteTimeout):
        return Condition.WRITE_TIMEOUT
    if isinstance(exc, httpx2.ReadTimeout):
        return Condition.READ_TIMEOUT
    if isinstance(exc, httpx2.ConnectError):
        return Condition.CONNECT_ERROR
    if isinstance(exc, httpx2.ReadError | httpx2.WriteError | httpx2.RemoteProtocolError | httpx2.CloseError):
        return Condition.RESET
    if isinstance(exc, httpx2.TimeoutException):
        return Condition.READ_TIMEOUT
    return None


def condition_for_status(status: int) -> Condition:
    """Classify a non-2xx status of the API (S3 statuses go through `prolific_mcp.api.s3` first)."""
    if 300 <= status < 400:
        return Condition.HTTP_3XX
    if status == 429:
        return Condition.HTTP_429
    if status < 500:
        return Condition.OTHER_4XX
    return {
        500: Condition.HTTP_500,
        502: Condition.HTTP_502,
        503: Condition.HTTP_503,
        504: Condition.HTTP_504,
    }.get(status, Condition.OTHER_5XX)


def backoff_delay(retry: int, random: Callable[[], float]) -> float:
    """Full-jitter exponential backoff before retry number `retry` (1 for the first retry)."""
    return random() * min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (retry - 1))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date; None if absent or junk."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class Timing:
    """The injected clock, sleep and random source (tests replace all three)."""

    sleep: Callable[[float], Awaitable[None]]
    clock: Callable[[], float]
    random: Callable[[], float]


class AttemptFailure(Exception):
    """An attempt failed with `condition`; `error` is what the caller sees if this is the last attempt."""

    def __init__(self, condition: Condition, error: ProlificError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.condition = condition
        self.error = error
        self.retry_after = retry_after


class AmbiguousOutcome(Exception):
    """A write's request left and no clear answer came back; the caller turns this into an Ambiguous*Error."""

    def __init__(self, failure: AttemptFailure, attempts: int) -> None:
        super().__init__(failure.error.message)
        self.failure = failure
        self.attempts = attempts

    @property
    def cause(self) -> str:
        return _CAUSES.get(self.failure.condition, f"Prolific answered HTTP {self.failure.error.status}")


_CAUSES: Final[Mapping[Condition, str]] = {
    Condition.WRITE_TIMEOUT: "sending the request timed out",
    Condition.READ_TIMEOUT: "Prolific did not answer in time",
    Condition.RESET: "the connection was closed before the answer arrived",
}

T = TypeVar("T")


async def call_with_retries(
    kind: CallKind,
    attempt: Callable[[int], Awaitable[T]],
    *,
    timing: Timing,
    deadline: float,
) -> tuple[T, int]:
    """Run `attempt(n)` (n = 1, 2, ...) under `kind`'s rule; return its result and the number of attempts.

    `attempt` raises `AttemptFailure` for a classified failure. A retried failure waits max(Retry-After,
    backoff); if that wait would pass `deadline` (on `timing.clock`) or exceed `CALL_BUDGET`, the call ends
    instead of sleeping: a 429 as `RateLimitedError` with the wait, anything else as its own error. An ambiguous
    failure raises `AmbiguousOutcome`; a final one raises its error.
    """
    rule = RETRY_TABLE[kind]
    number = 0
    while True:
        number += 1
        try:
            return await attempt(number), number
        except AttemptFailure as failure:
            decision = rule.decide(failure.condition)
            if decision is Decision.AMBIGUOUS:
                raise AmbiguousOutcome(failure, number) from None
            if decision is Decision.FAIL or number >= rule.max_attempts:
                failure.error.note_attempts(number)
                raise failure.error from None
            wait = max(failure.retry_after or 0.0, backoff_delay(number, timing.random))
            if wait > CALL_BUDGET or timing.clock() + wait > deadline:
                if failure.condition is Condition.HTTP_429:
                    error: ProlificError = RateLimitedError.after(wait)
                else:
                    error = failure.error
                error.note_attempts(number)
                raise error from None
            await timing.sleep(wait)
