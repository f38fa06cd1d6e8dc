"""API requests in flight, so that the sandbox's record work steps aside while any is being served.

At Prolific, imports and schema migrations run on other machines: a large import does not slow the API. In the
sandbox they run in a worker thread of the API's own process, and every API request waits for the worker at each
hand-off of the GIL (the socket, the db thread, back to the event loop). So the API counts its requests in
flight (`ApiTraffic.serving`, around the API app), and the workers call `step_aside()` between records: while a
request is being served they wait (without the GIL) until none is, so the request runs alone.

The fake S3's receiver shares the API's event loop: while a request is in flight it stops reading a PUT's body
(`yield_to_api`), so the body's chunks do not queue before the request's steps on the loop (the client's sending
pauses too, as its socket buffer fills).

A worker (or the receiver) never waits longer than `max_pause` at once, and after such a wait it works at least as
long before it waits again, so a steady stream of requests slows record work and uploads down (to half at worst)
but never stops them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_PAUSE: Final = 0.05
"""Seconds a worker waits at most, at once, for the requests in flight to end (then works as long)."""
POLL: Final = 0.001
"""How often the receiver, on the event loop, looks whether the requests in flight have ended."""


class ApiTraffic:
    """The number of API requests in flight, and the pause that the record workers take while it is not zero."""

    def __init__(self, max_pause: float = MAX_PAUSE) -> None:
        self.max_pause = max_pause
        self.in_flight = 0
        """Requests being served now (read without the lock by the workers: a stale read only delays a pause)."""
        self.pauses = 0
        """How many times a worker stepped aside (tests observe it instead of timing anything)."""
        self.receiver_pauses = 0
        """How many times the fake S3's receiver stopped reading a body for a request."""
        self.waiting = 0
        """Workers stepping aside right now."""
        self._cond = threading.Condition(threading.Lock())
        self._busy_until = 0.0
        self._receiving_until = 0.0

    def enter(self) -> None:
        with self._cond:
            self.in_flight += 1

    def leave(self) -> None:
        with self._cond:
            self.in_flight -= 1
            if self.in_flight <= 0:
                self.in_flight = 0
                self._cond.notify_all()

    def step_aside(self) -> None:
        """Called by a worker between records: wait while requests are in flight (at most `max_pause` at once)."""
        if not self.in_flight:
            return
        now = time.monotonic()
        if now < self._busy_until:
            return
        with self._cond:
            if not self.in_flight:
                return
            self.pauses += 1
            self.waiting += 1
            try:
                idle = self._cond.wait_for(lambda: self.in_flight == 0, self.max_pause)
            finally:
                self.waiting -= 1
        if not idle:  # a long request, or a stream of them: work as long as we waited before waiting again
            self._busy_until = time.monotonic() + (time.monotonic() - now)

    async def yield_to_api(self) -> None:
        """Called by the fake S3's receiver on the event loop between chunks: sleep while requests are in flight (at
        most `max_pause` at once)."""
        if not self.in_flight:
            return
        now = time.monotonic()
        if now < self._receiving_until:
            return
        self.receiver_pauses += 1
        deadline = now + self.max_pause
        while self.in_flight:
            if time.monotonic() >= deadline:
                self._receiving_until = time.monotonic() + self.max_pause
                return
            await asyncio.sleep(POLL)

    def around(self, app: ASGIApp) -> ASGIApp:
        """`app` with its requests counted as in flight from their start to their end."""

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            self.enter()
            try:
                await app(scope, receive, send)
            finally:
                self.leave()

        return counted
