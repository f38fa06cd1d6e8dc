"""The server as it was before the time-to-outcome changes, for goal 8's before/after in one run.

    python -m bench.baseline [the server's arguments]

Runs the real server command with two pieces of the earlier code put back (nothing else differs):
- the polling schedule: the second poll 3 s after the PUT's end, whatever is known, and the processing rate
  only ever shortening the growing interval (jitter on every delay), a rate never taken from the server's own
  processing time;
- the pre-flight scan hashing inline, in the parsing thread (now: in a thread of its own beside the parsing);
- the whole pre-flight before the PUT, for every file (now: a large file's PUT starts once it is hashed and
  claimed, beside the rest of the scan).
"""

from __future__ import annotations

import hashlib

from prolific_mcp.cli import main
from prolific_mcp.operations import early_put
from prolific_mcp.uploads import polling, scan

OLD_FIRST_DELAY = 3.0


def old_next_delay(self: polling.PollPlanner) -> float:
    """`PollPlanner.next_delay` before the change (commit 0a32b58)."""
    self._interval = (
        OLD_FIRST_DELAY if self._interval is None else min(polling.MAX_DELAY, self._interval * polling.GROWTH)
    )
    delay = self._interval
    eta = self.eta()
    if eta is not None and eta + polling.ETA_MARGIN < delay:
        delay = eta + polling.ETA_MARGIN
    delay *= 1.0 - polling.JITTER * self.random()
    return max(polling.MIN_DELAY, min(polling.MAX_DELAY, delay))


_observe = polling.PollPlanner.observe


def old_observe(
    self: polling.PollPlanner, now: float, status: str, processed: int | None, processing_seconds: float | None = None
) -> None:
    """`PollPlanner.observe` without the server's processing time (which came with this issue's changes)."""
    _observe(self, now, status, processed)


class InlineSha256:
    """The scan's sha256 computed in the reading thread, as before."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._digest.update(data)

    def close(self) -> None:
        return None

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def install() -> None:
    polling.PollPlanner.next_delay = old_next_delay  # type: ignore[method-assign]
    polling.PollPlanner.observe = old_observe  # type: ignore[method-assign]
    scan._Sha256Thread = InlineSha256  # type: ignore[misc,assignment]
    early_put.EARLY_PUT_MIN_BYTES = 1 << 62  # type: ignore[misc]


if __name__ == "__main__":
    install()
    raise SystemExit(main())
