"""The retry table (and its copy in docs/retries.md), backoff, Retry-After and the retry loop."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import anyio
import httpx2
import pytest

from prolific_mcp.api.errors import NotFoundError, RateLimitedError, Resource, ServerError
from prolific_mcp.api.retry import (
    API_CONDITIONS,
    BACKOFF_BASE,
    BACKOFF_CAP,
    CALL_BUDGET,
    NEVER_SENT,
    RETRY_TABLE,
    S3_CONDITIONS,
    AmbiguousOutcome,
    AttemptFailure,
    CallKind,
    Condition,
    Decision,
    Timing,
    backoff_delay,
    call_with_retries,
    condition_for_exception,
    condition_for_status,
    parse_retry_after,
)

from .conftest import FakeClock

DOCS = Path(__file__).resolve().parents[2] / "docs" / "retries.md"


# --- the table ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CallKind))
def test_each_row_partitions_its_conditions(kind: CallKind) -> None:
    rule = RETRY_TABLE[kind]
    universe = S3_CONDITIONS if kind is CallKind.S3_PUT else API_CONDITIONS
    assert rule.conditions == universe
    assert rule.retry_on | rule.ambiguous <= universe
    assert not rule.retry_on & rule.ambiguous
    assert rule.never == universe - rule.retry_on - rule.ambiguous


def test_table_follows_the_retry_rules() -> None:
    read = RETRY_TABLE[CallKind.READ]
    for status in ("429", "500", "502", "503", "504", "read-timeout", "connect-timeout", "reset"):
        assert read.decide(Condition(status)) is Decision.RETRY
    assert read.decide(Condition.OTHER_4XX) is Decision.FAIL
    assert read.max_attempts == 5

    for kind in (CallKind.CREATE, CallKind.UPLOAD_URL):
        rule = RETRY_TABLE[kind]
        assert rule.retry_on == NEVER_SENT == {"connect-error", "connect-timeout", "pool-timeout"}
        for after_sending in ("read-timeout", "write-timeout", "reset", "500", "503"):
            assert rule.decide(Condition(after_sending)) is Decision.AMBIGUOUS
        assert rule.decide(Condition.HTTP_429) is Decision.FAIL
    assert RETRY_TABLE[CallKind.UPLOAD_URL].max_attempts == 2  # retried at most once

    append = RETRY_TABLE[CallKind.APPEND]
    assert (append.retry_on, append.never, append.ambiguous) == (read.retry_on, read.never, read.ambiguous)

    put = RETRY_TABLE[CallKind.S3_PUT]
    for retried in ("500", "503", "reset", "write-timeout"):
        assert put.decide(Condition(retried)) is Decision.RETRY
    for never in ("SignatureDoesNotMatch", "EntityTooLarge", "other-4xx", "expired"):
        assert put.decide(Condition(never)) is Decision.FAIL


def _tokens(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def test_docs_table_equals_the_code_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[0].strip("`") in CallKind.__members__:
            rows[CallKind(cells[0].strip("`"))] = cells
    assert set(rows) == set(CallKind)
    for kind, rule in RETRY_TABLE.items():
        _, calls, retry_on, never, ambiguous, attempts = rows[kind]
        assert calls == rule.calls
        assert _tokens(retry_on) == {c.value for c in rule.retry_on}, kind
        assert _tokens(never) == {c.value for c in rule.never}, kind
        assert _tokens(ambiguous) == {c.value for c in rule.ambiguous}, kind
        assert int(attempts) == rule.max_attempts
    backoff = re.search(r"Backoff: base `([\d.]+)` s, cap `([\d.]+)` s, per-call budget `([\d.]+)` s", text)
    assert backoff is not None
    assert tuple(float(v) for v in backoff.groups()) == (BACKOFF_BASE, BACKOFF_CAP, CALL_BUDGET)


# --- classification ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "condition"),
    [
        (httpx2.ConnectError("refused"), Condition.CONNECT_ERROR),
        (httpx2.ConnectTimeout("t"), Condition.CONNECT_TIMEOUT),
        (httpx2.PoolTimeout("t"), Condition.POOL_TIMEOUT),
        (httpx2.WriteTimeout("t"), Condition.WRITE_TIMEOUT),
        (httpx2.ReadTimeout("t"), Condition.READ_TIMEOUT),
        (httpx2.ReadError("reset"), Condition.RESET),
        (httpx2.WriteError("broken pipe"), Condition.RESET),
        (httpx2.RemoteProtocolError("Server disconnected without sending a response."), Condition.RESET),
        (httpx2.LocalProtocolError("ours"), None),
        (httpx2.UnsupportedProtocol("ftp"), None),
    ],
)
def test_condition_for_exception(exc: httpx2.HTTPError, condition: Condition | None) -> None:
    assert condition_for_exception(exc) is condition


@pytest.mark.parametrize(
    ("status", "condition"),
    [
        (301, Condition.HTTP_3XX),
        (307, Condition.HTTP_3XX),
        (400, Condition.OTHER_4XX),
        (404, Condition.OTHER_4XX),
        (409, Condition.OTHER_4XX),
        (429, Condition.HTTP_429),
        (500, Condition.HTTP_500),
        (501, Condition.OTHER_5XX),
        (502, Condition.HTTP_502),
        (503, Condition.HTTP_503),
        (504, Condition.HTTP_504),
        (505, Condition.OTHER_5XX),
    ],
)
def test_condition_for_status(status: int, condition: Condition) -> None:
    assert condition_for_status(status) is condition


# --- backoff and Retry-After -------------------------------------------------------------------------------------


def test_backoff_is_full_jitter_exponential_capped() -> None:
    assert [backoff_delay(n, lambda: 1.0) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 20, 20]
    assert [backoff_delay(n, lambda: 0.0) for n in range(1, 5)] == [0, 0, 0, 0]
    assert backoff_delay(3, lambda: 0.25) == 0.5


NOW = datetime(2026, 9, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("3600", 3600.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("Tue, 01 Sep 2026 12:02:00 GMT", 120.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


# --- the loop ----------------------------------------------------------------------------------------------------


def _timing(clock: FakeClock, jitter: float = 0.5) -> Timing:
    return Timing(sleep=clock.sleep, clock=clock, random=lambda: jitter)


def _server_error() -> ServerError:
    return ServerError("Prolific failed (HTTP 503)", status=503)


@pytest.mark.anyio
async def test_retries_then_succeeds_waiting_max_of_retry_after_and_backoff(clock: FakeClock) -> None:
    script = [
        AttemptFailure(Condition.HTTP_503, _server_error(), retry_after=3.0),
        AttemptFailure(Condition.READ_TIMEOUT, _server_error()),
    ]

    async def attempt(number: int) -> str:
        if script:
            raise script.pop(0)
        return f"ok after {number}"

    result, attempts = await call_with_retries(
        CallKind.READ, attempt, timing=_timing(clock), deadline=clock() + CALL_BUDGET
    )
    assert (result, attempts) == ("ok after 3", 3)
    assert clock.waits == [3.0, 0.5]  # max(3, 0.25), then max(0, 0.5 * min(20, 1.0))


@pytest.mark.anyio
async def test_gives_up_after_max_attempts_and_says_so(clock: FakeClock) -> None:
    calls = 0

    async def attempt(number: int) -> None:
        nonlocal calls
        calls += 1
        raise AttemptFailure(Condition.HTTP_502, _server_error())

    with pytest.raises(ServerError) as info:
        await call_with_retries(CallKind.READ, attempt, timing=_timing(clock, 0.0), deadline=math.inf)
    assert calls == 5
    assert len(clock.waits) == 4
    assert info.value.attempts == 5
    assert "(5 attempts)" in str(info.value)


@pytest.mark.anyio
async def test_final_condition_is_not_retried(clock: FakeClock) -> None:
    calls = 0

    async def attempt(number: int) -> None:
        nonlocal calls
        calls += 1
        raise AttemptFailure(Condition.OTHER_4XX, NotFoundError("gone", resource=Resource("dataset", "d1")))

    with pytest.raises(NotFoundError):
        await call_with_retries(CallKind.READ, attempt, timing=_timing(clock), deadline=math.inf)
    assert calls == 1
    assert clock.waits == []


@pytest.mark.anyio
async def test_rate_limit_beyond_deadline_answers_at_once(clock: FakeClock) -> None:
    async def attempt(number: int) -> None:
        raise AttemptFailure(Condition.HTTP_429, RateLimitedError.after(3600.0), retry_after=3600.0)

    with pytest.raises(RateLimitedError) as info:
        await call_with_retries(CallKind.READ, attempt, timing=_timing(clock), deadline=clock() + CALL_BUDGET)
    assert clock.waits == []
    assert info.value.retry_after == 3600.0
    assert str(info.value) == "rate-limited by Prolific: retry after 3600 s"


@pytest.mark.anyio
async def test_wait_past_the_callers_deadline_raises_the_last_error(clock: FakeClock) -> None:
    async def attempt(number: int) -> None:
        raise AttemptFailure(Condition.HTTP_503, _server_error(), retry_after=10.0)

    with pytest.raises(ServerError):
        await call_with_retries(CallKind.READ, attempt, timing=_timing(clock), deadline=clock() + 5.0)
    assert clock.waits == []


@pytest.mark.anyio
async def test_a_single_wait_never_exceeds_the_budget_even_without_deadline(clock: FakeClock) -> None:
    async def attempt(number: int) -> None:
        raise AttemptFailure(Condition.HTTP_503, _server_error(), retry_after=CALL_BUDGET + 1)

    with pytest.raises(ServerError):
        await call_with_retries(CallKind.S3_PUT, attempt, timing=_timing(clock), deadline=math.inf)
    assert clock.waits == []


@pytest.mark.anyio
async def test_ambiguous_condition_is_handed_back_without_retry(clock: FakeClock) -> None:
    calls = 0

    async def attempt(number: int) -> None:
        nonlocal calls
        calls += 1
        raise AttemptFailure(Condition.RESET, _server_error())

    with pytest.raises(AmbiguousOutcome) as info:
        await call_with_retries(CallKind.CREATE, attempt, timing=_timing(clock), deadline=math.inf)
    assert calls == 1
    assert info.value.cause == "the connection was closed before the answer arrived"


@pytest.mark.anyio
async def test_never_sent_failures_are_retried_for_creates(clock: FakeClock) -> None:
    attempts_seen: list[int] = []

    async def attempt(number: int) -> str:
        attempts_seen.append(number)
        if number < 3:
            raise AttemptFailure(Condition.CONNECT_ERROR, _server_error())
        return "created"

    assert await call_with_retries(CallKind.CREATE, attempt, timing=_timing(clock), deadline=math.inf) == (
        "created",
        3,
    )
    assert attempts_seen == [1, 2, 3]


@pytest.mark.anyio
async def test_real_sleep_is_injected_not_used(clock: FakeClock) -> None:
    """With the fake clock, five attempts with long backoffs finish at once in real time."""
    with anyio.fail_after(2):

        async def attempt(number: int) -> None:
            raise AttemptFailure(Condition.HTTP_500, _server_error())

        with pytest.raises(ServerError):
            await call_with_retries(CallKind.READ, attempt, timing=_timing(clock, 1.0), deadline=math.inf)
    assert clock.waits == [0.5, 1.0, 2.0, 4.0]
