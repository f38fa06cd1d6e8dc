"""The one throttle every progress notification passes (docs/architecture.md, Progress).

Whatever reports progress (an upload job, an import or migration watch, an append waiting out a running import),
the caller's notifications go through a `Throttle`: values rounded to a tenth, strictly increasing, 100 only once
and only when the operation says it is finished; an update that only moves a number is sent at most once per
250 ms *and* per whole percent (whichever is rarer); news (a message whose words changed, not just its numbers) is
always sent, nudged up by a tenth when its value has not risen; and when nothing has been sent for a heartbeat,
the next report goes out nudged up by a tenth too, so a client sees the operation is alive.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

MIN_INTERVAL: Final = 0.25
"""Seconds between two updates that only move a number."""
HEARTBEAT: Final = 10.0
"""After this many seconds without a notification, the next report is sent even if its value has not risen."""
STEP: Final = 0.1
"""The nudge for news or a heartbeat whose value has not risen (values are rounded to this)."""
TOP_BEFORE_END: Final = 99.9
"""The highest value before the operation has finished."""
_NUMBERS = re.compile(r"\d[\d,.]*")

Report = Callable[[float, str], Awaitable[None]]


def message_kind(message: str) -> str:
    """A message with its numbers blanked: two messages of one kind differ only in their counts."""
    return _NUMBERS.sub("#", message)


@dataclass(eq=False)
class Throttle:
    """Wraps a reporter (value 0–100, message) with the rules above; `await throttle(value, message)`."""

    send: Report
    clock: Callable[[], float] = time.monotonic
    sent: list[tuple[float, str]] = field(default_factory=list)
    """Every (value, message) sent, in order."""
    _last_value: float = -1.0
    _last_kind: str | None = None
    _last_time: float | None = None

    def decide(self, value: float, message: str) -> float | None:
        """The value to send for this report, or None to drop it."""
        if not math.isfinite(value):
            return None
        value = round(min(100.0, max(0.0, value)), 1)
        last = self._last_value
        if last >= 100.0:
            return None
        if value >= 100.0:
            return 100.0
        now = self.clock()
        first = self._last_time is None
        elapsed = math.inf if self._last_time is None else now - self._last_time
        news = message_kind(message) != self._last_kind
        if value > last:
            if first or news or elapsed >= HEARTBEAT:
                return value
            if elapsed >= MIN_INTERVAL and math.floor(value) > math.floor(last):
                return value
            return None
        if (news or elapsed >= HEARTBEAT) and last + STEP <= TOP_BEFORE_END:
            return round(last + STEP, 1)
        return None

    async def __call__(self, value: float, message: str) -> None:
        chosen = self.decide(value, message)
        if chosen is None:
            return
        self._last_value = chosen
        self._last_kind = message_kind(message)
        self._last_time = self.clock()
        self.sent.append((chosen, message))
        await self.send(chosen, message)


def throttled(send: Report, clock: Callable[[], float] = time.monotonic) -> Throttle:
    """`send` behind a Throttle (one per call that reports progress)."""
    return Throttle(send, clock)
