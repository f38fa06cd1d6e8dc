from __future__ import annotations

import math

import pytest

from prolific_mcp.uploads.polling import (
    ETA_MARGIN,
    FIRST_DELAY,
    FIRST_DELAY_BLIND,
    JITTER,
    MAX_DELAY,
    MIN_DELAY,
    MIN_SERVER_SPAN,
    PollPlanner,
)


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


def test_the_predicted_end_sets_the_next_poll_within_the_bounds() -> None:
    planner = PollPlanner(total_records=100, started_at=0.0, random=lambda: 0.0)
    assert planner.next_delay() == FIRST_DELAY
    planner.observe(1.0, "processing", 99)
    assert planner.eta() is not None
    assert MIN_DELAY <= planner.next_delay() < 0.5  # one record left: just after the predicted end
    planner.observe(2.0, "processing", 99)  # no progress: the old rate stands
    assert planner.next_delay() <= MAX_DELAY
    slow = PollPlanner(total_records=1_000_000, started_at=0.0, random=lambda: 0.0)
    slow.next_delay()
    slow.observe(1.0, "processing", 10)
    assert slow.next_delay() == MAX_DELAY  # a far end: never more than the cap


@pytest.mark.parametrize("rnd", [0.0, 0.5, 0.999])
@pytest.mark.parametrize("duration", [0.5, 0.8, 1.5, 2.0])
def test_a_short_import_with_a_record_count_is_seen_soon_after_it_ends(duration: float, rnd: float) -> None:
    requests, lag = _simulate(duration, rnd, queued=duration / 10)
    assert lag <= 0.7
    assert requests + 1 <= 3  # with the request at the watch's start


@pytest.mark.parametrize("rnd", [0.0, 0.5, 0.999])
def test_a_5s_import_costs_no_more_requests_than_the_cli(rnd: float) -> None:
    requests, lag = _simulate(5, rnd, queued=0.5)
    assert requests + 1 <= 3  # the CLI's: at 0, 3 and 6 s
    assert lag <= 1.0


@pytest.mark.parametrize("rnd", [0.0, 0.999])
def test_without_a_record_count_the_first_wait_is_the_clis(rnd: float) -> None:
    planner = PollPlanner(random=lambda: rnd)
    assert FIRST_DELAY_BLIND * (1 - JITTER) <= planner.next_delay() <= FIRST_DELAY_BLIND
    requests, _ = _simulate(5, rnd, total=None)
    assert requests + 1 <= 3


def test_the_servers_processing_time_gives_the_first_rate_without_the_queued_time() -> None:
    """4,000 records at 2,000/s after 0.3 s queued: seen at 1.0 s with 1,400 done. From the watch's start the rate
    looks like 1,400/s and the next poll comes 0.56 s after the end; from the server's 0.7 s of processing it is
    2,000/s, and the next poll comes ETA_MARGIN after the end. A span too short to judge gives no rate."""
    blind = PollPlanner(total_records=4000, started_at=0.0, random=lambda: 0.0)
    blind.next_delay()
    blind.observe(1.0, "processing", 1400)
    timed = PollPlanner(total_records=4000, started_at=0.0, random=lambda: 0.0)
    timed.next_delay()
    timed.observe(1.0, "processing", 1400, processing_seconds=0.7)
    assert timed.eta() == pytest.approx(1.3)
    assert timed.next_delay() == pytest.approx(1.3 + ETA_MARGIN)
    assert blind.next_delay() > timed.next_delay() + 0.5
    frozen = PollPlanner(total_records=4000, started_at=0.0, random=lambda: 0.0)
    frozen.next_delay()
    frozen.observe(1.0, "processing", 1400, processing_seconds=MIN_SERVER_SPAN / 2)  # updated_at not moving
    assert frozen.eta() == blind.eta()


def test_with_the_servers_clock_the_latest_rate_predicts_the_end() -> None:
    """An import speeding up: 1,000 records in its first 0.5 s of processing, 3,000 more in the next second. The
    next poll follows the latest rate (3,000/s), not an average with the first (2,000/s would be 0.5 s late)."""
    planner = PollPlanner(total_records=10_000, started_at=0.0, random=lambda: 0.0)
    planner.next_delay()
    planner.observe(1.0, "processing", 1000, processing_seconds=0.5)
    planner.next_delay()
    planner.observe(2.0, "processing", 4000, processing_seconds=1.5)
    assert planner.eta() == pytest.approx(2.0)
    assert planner.next_delay() == pytest.approx(2.0 + ETA_MARGIN)
    stalled = PollPlanner(total_records=10_000, started_at=0.0, random=lambda: 0.0)
    stalled.observe(1.0, "processing", 1000, processing_seconds=0.5)
    stalled.observe(2.0, "processing", 1000, processing_seconds=0.5)  # not updated since: the rate stands
    assert stalled.eta() == pytest.approx(4.5)
