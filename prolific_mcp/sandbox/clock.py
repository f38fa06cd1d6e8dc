"""The sandbox's clock: real time plus an offset that tests move forward (URL expiry, timestamps)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class Clock:
    """Wall-clock time shifted by an adjustable offset; thread-safe.

    It drives presigned-URL expiry and every timestamp the sandbox reports. The pace of imports (how long one
    stays `queued` or `processing`) runs on real time, so advancing the clock never skips those.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the epoch, as the sandbox sees them."""
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` (negative moves it back); returns the new time."""
        with self._lock:
            self._offset += float(seconds)
            return time.time() + self._offset

    @property
    def offset(self) -> float:
        """How far the clock is ahead of real time, in seconds."""
        with self._lock:
            return self._offset


def iso(ts: float | None) -> str | None:
    """ISO 8601 in UTC with microseconds and a `Z`, as Prolific writes its timestamps; None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def amz_date(ts: float) -> str:
    """The compact UTC form S3 uses in `X-Amz-Date` (e.g. 20260101T120000Z)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_amz_date(value: str) -> float | None:
    """The epoch seconds of an `X-Amz-Date` value, or None if it is not one."""
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def s3_time(ts: float) -> str:
    """The form S3 uses for `Expires` and `ServerTime` in its XML errors (e.g. 2026-01-01T12:00:00Z)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
