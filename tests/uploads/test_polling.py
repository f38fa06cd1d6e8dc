from __future__ import annotations

import math

import pytest

from prolific_mcp.uploads.polling import MAX_DELAY, PollPlanner


def _simulate(duration: float, rnd: float, total: int | None = 50_000, queued: float = 0.3) -> tuple[int, float]:
    """A virtual clock: the job is queued, then processes `total` records evenly until `duration`."""
    planner = PollPlanner(total_records=total, started_at=0.0, random=lambda: rnd)
    now = 0.0
    while True:
        now += planner.next_delay()
        if now >= duration:
            planner.observe(now, "complete", None)
            return planner.requests, now - duration
        status = "queued" if now < queued else "processing"
        done = int((total or 0) * (now - queued) / (duration - queued)) if status == "processing" else None
        planner.observe(now, status, done)


@pytest.mark.parametrize("rnd", [0.0, 0.5, 0.999])
@pytest.mark.parametrize("duration", [5, 60, 600])
def test_fewer_requests_than_a_fixed_3s_poll_and_a_lag_under_5s(duration: int, rnd: float) -> None:
    requests, lag = _simulate(duration, rnd)
    cli_requests = math.ceil(duration / 3)
    assert requests <= cli_requests
    if duration > 5:
        assert requests < cli_requests
    assert lag <= MAX_DELAY


@pytest.mark.parametrize("rnd", [0.0, 0.999])
def test_without_a_record_count_the_interval_still_caps_at_5s(rnd: float) -> None:
    planner = PollPlanner(random=lambda: rnd)
    delays = [planner.next_delay() for _ in range(20)]
    assert all(0 < d <= MAX_DELAY for d in delays)
    assert delays[-1] > MAX_DELAY * 0.8
    requests, lag = _simulate(60, rnd, total=None)
    assert requests < 20
    assert lag <= MAX_DELAY


def test_the_rate_only_shortens_the_wait_and_never_past_zero() -> None:
    planner = PollPlanner(total_records=100, started_at=0.0, random=lambda: 0.0)
    planner.next_delay()
    planner.observe(3.0, "processing", 99)
    assert planner.eta() is not None
    assert 0.25 <= planner.next_delay() < 1.0
    planner.observe(4.0, "processing", 99)  # no progress: the old rate stands
    assert planner.next_delay() <= MAX_DELAY
