"""The polling schedule for imports and migrations (docs/architecture.md, Waiting), and `poll_until`, the one
loop behind every wait.

Prolific's CLI polls every 3 s. We poll once when the watch starts, then at intervals growing by half up to 5 s,
so a terminal status is noticed within 5 s and a 60 s or 600 s import costs far fewer requests than the CLI. The
first interval is 1 s when the record count is known (a small import is often done by then, and the rate rule
below keeps a longer one cheap), 3 s otherwise (the CLI's, so a 5 s job costs no more requests than the CLI).
While an import is processing and we know how many records it has, the observed `processed_offset` rate predicts
when it ends, and the next poll lands just after that (at most 5 s away) instead of following the interval: that
keeps a 5 s import at the CLI's request count and notices a short import's end within a fraction of a second.
The rate comes from the server's own clock when the import says how long it has been processing
(`processing_started_at` to `updated_at`): at first since processing started, then between its last two counts;
otherwise it counts from the watch's start, queued time included, and then between our requests, averaged.
Jitter applies only to the interval, and only ever shortens it.
"""

from __future__ import annotations

import logging
import random as _random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

import anyio

from prolific_mcp.api.errors import (
    ApiUnreachableError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)
from prolific_mcp.redaction import redact

log = logging.getLogger("prolific_mcp.uploads")

FIRST_DELAY: Final = 1.0
"""The first interval when the record count is known (an import watched after its PUT)."""
FIRST_DELAY_BLIND: Final = 3.0
"""The first interval without a record count (no end can be predicted: migrations, appends, foreign imports)."""
GROWTH: Final = 1.5
MAX_DELAY: Final = 5.0
MIN_DELAY: Final = 0.25
JITTER: Final = 0.15
"""Each delay is multiplied by a factor in (1 - JITTER, 1]: downward only."""
ETA_MARGIN: Final = 0.3
MIN_SERVER_SPAN: Final = 0.2
"""A rate from the server's timestamps needs this much processing time behind it (a server that does not move
`updated_at` while processing gives a span near 0, and no rate)."""
ERRORS_IN_A_ROW: Final = 5
"""A wait ends with the error after this many transient failures in a row."""
TRANSIENT: Final = (ServerError, ApiUnreachableError, RateLimitedError, UnexpectedResponseError)
"""Failures a later request may not meet (the client has already retried each one within its own budget)."""

T = TypeVar("T")


@dataclass(slots=True)
class PollPlanner:
    """Decides how long to wait before the next status request of one job."""

    total_records: int | None = None
    started_at: float | None = None
    """When the watch began (the PUT's end), on the same clock as `observe`: the first rate estimate counts
    from there, which can only underestimate the rate, so the predicted end is never too early."""
    random: Callable[[], float] = _random.random
    first_delay: float | None = None
    """The first interval, when the caller knows better than the defaults (a short grace period, say)."""
    _interval: float | None = None
    _last: tuple[float, int] | None = None
    _rate: float | None = None
    _server: tuple[float, int] | None = None
    """The last (processing seconds, processed count) the server gave, on its own clock."""
    requests: int = field(default=0)

    def observe(self, now: float, status: str, processed: int | None, processing_seconds: float | None = None) -> None:
        """Record one status response: `now` on a monotonic clock, the job's status and processed count, and how
        long the server had been processing when it counted them (`processing_seconds`, when it says)."""
        self.requests += 1
        if status != "processing" or processed is None:
            self._last = None
            return
        span = processing_seconds or 0.0
        if processed > 0 and span >= MIN_SERVER_SPAN:
            earlier, self._server = self._server, (span, processed)
            if self._rate is None:
                # The server's own rate, queued time excluded; counted at its last update, at or before `now`, so
                # the predicted end is still late rather than early.
                self._rate = processed / span
                self._last = (now, processed)
                return
            if earlier is not None and span > earlier[0] and processed > earlier[1]:
                # The rate between the server's last two counts, on its clock, and not averaged with an earlier one:
                # an import's pace changes as it goes (averaged with its start, a 300 MB import's end was predicted
                # 0.8 s late).
                self._rate = (processed - earlier[1]) / (span - earlier[0])
                self._last = (now, processed)
                return
        last = self._last
        if last is None and self.started_at is not None and self._rate is None:
            last = (self.started_at, 0)
        if last is not None:
            then, before = last
            if now > then and processed > before:
                rate = (processed - before) / (now - then)
                self._rate = rate if self._rate is None else 0.5 * self._rate + 0.5 * rate
        self._last = (now, processed)

    def eta(self) -> float | None:
        """Seconds until the job should finish, from the processing rate, when it can be known."""
        if self._rate is None or self._last is None or not self.total_records:
            return None
        remaining = max(0, self.total_records - self._last[1])
        return remaining / self._rate

    def next_delay(self) -> float:
        """Seconds to wait before the next request (between MIN_DELAY and MAX_DELAY).

        With a predicted end (`eta`), the next request goes just after it, even past the current interval: a
        prediction from the rate so far is late rather than early (the rate counts from the watch's start), so
        this neither polls before the end nor waits out a longer interval after it. Otherwise the interval,
        growing from FIRST_DELAY (FIRST_DELAY_BLIND without a record count), shortened by the jitter."""
        if self._interval is None:
            self._interval = self.first_delay or (FIRST_DELAY if self.total_records else FIRST_DELAY_BLIND)
        else:
            self._interval = min(MAX_DELAY, self._interval * GROWTH)
        eta = self.eta()
        delay = eta + ETA_MARGIN if eta is not None else self._interval * (1.0 - JITTER * self.random())
        return max(MIN_DELAY, min(MAX_DELAY, delay))


async def poll_until(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    deadline: float,
    planner: PollPlanner,
    on_each: Callable[[T], Awaitable[None]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    errors_in_a_row: int = ERRORS_IN_A_ROW,
) -> T:
    """Fetch on the planner's schedule until `done(value)` or `deadline` (on `clock`); when the schedule's next
    request would pass the deadline, the last one is made at the deadline instead. Returns the last value fetched,
    done or not.

    A transient failure (`TRANSIENT`) is tolerated up to `errors_in_a_row` times in a row, then raised. A
    rate-limit's `retry_after` is honoured: that long is slept if it fits before the deadline; otherwise the wait
    ends with what is known (the last value, or the error when nothing was fetched yet). Any other error is raised
    at once. `on_each` sees every value fetched.
    """
    last: list[T] = []
    failures = 0
    while True:
        try:
            value = await fetch()
        except TRANSIENT as exc:
            failures += 1
            log.info("status check failed (%s in a row): %s", failures, redact(str(exc)))
            if failures >= errors_in_a_row:
                raise
            planned = planner.next_delay()
            if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
                if clock() + exc.retry_after > deadline:
                    if not last:
                        raise
                    return last[0]
                planned = exc.retry_after
            pause = _within(planned, deadline - clock())
            if pause is None:
                if not last:
                    raise
                return last[0]
            await sleep(pause)
            continue
        failures = 0
        last[:] = [value]
        if on_each is not None:
            await on_each(value)
        if done(value):
            return value
        pause = _within(planner.next_delay(), deadline - clock())
        if pause is None:
            return value
        await sleep(pause)


def _within(wait: float, left: float) -> float | None:
    """The sleep before the next request when `left` seconds of the caller's wait remain: the planned one, or, when
    that would pass the end, the rest of the wait (so the last request comes at its end and the wait given is the
    wait used); None when too little is left for another request."""
    if wait <= left:
        return wait
    return left if left >= MIN_DELAY else None
