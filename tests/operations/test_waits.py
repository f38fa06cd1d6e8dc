"""An append held by a running import waits the whole wait it was given (docs/architecture.md, Waiting)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from prolific_mcp.api.models import AppendResult
from prolific_mcp.operations import appends
from prolific_mcp.operations.deps import Deps, OperationError
from tests.operations.conftest import DS, Clock, FakeClient, conflict, dataset

pytestmark = pytest.mark.anyio


async def test_a_short_wait_is_used_in_full_before_the_append_gives_up(
    make_deps: Callable[..., Deps], fake: FakeClient, clock: Clock
) -> None:
    fake.datasets[DS] = dataset()
    fake.appends = [conflict()]
    start = clock.now
    with pytest.raises(OperationError, match="call append_records again with the same records"):
        await appends.append_records(make_deps(), DS, [{"review": "a"}], wait_seconds=2)
    assert clock.now - start == pytest.approx(2.0)
    assert [c for c in fake.calls if c.startswith("append")] == [
        "append 16",
        "append 16",
    ]  # the first attempt, and the last at the end of the wait


async def test_an_import_that_ends_within_a_short_wait_lets_the_append_through(
    make_deps: Callable[..., Deps], fake: FakeClient, clock: Clock
) -> None:
    fake.datasets[DS] = dataset()
    fake.appends = [conflict(), AppendResult(accepted_count=1, rejected_count=0, duplicate_count=0)]
    result = await appends.append_records(make_deps(), DS, [{"review": "a"}], wait_seconds=2)
    assert result.accepted_count == 1
    assert sum(clock.sleeps) <= 2.0
