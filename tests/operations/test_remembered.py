"""The ledger's note of the datasets a server used (list_datasets, the dataset_id completions): a use that changes
nothing but the time is written at most once per REMEMBER_SECONDS per process, and the process itself still orders
its datasets by its latest use (docs/performance.md, goal 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from prolific_mcp.operations.deps import REMEMBER_SECONDS, Deps, ServiceOptions
from prolific_mcp.uploads.jobs import UploadManager
from prolific_mcp.uploads.ledger import Ledger
from tests.operations.conftest import Clock, FakeClient, dataset

pytestmark = pytest.mark.anyio

A = "0192a3b5-e8f9-7a0b-1c2d-3e4f5a6b7c01"
B = "0192a3b5-e8f9-7a0b-1c2d-3e4f5a6b7c02"


async def test_uses_are_written_once_a_minute_and_this_process_orders_by_the_latest(
    tmp_path: Path, fake: FakeClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3", clock=clock.time)
    writes: list[tuple[str, str]] = []
    write = ledger.remember_dataset

    def counted(origin: str, account: str, dataset_id: str, **options: Any) -> None:
        writes.append((dataset_id, options["source"]))
        write(origin, account, dataset_id, **options)

    monkeypatch.setattr(ledger, "remember_dataset", counted)
    options = ServiceOptions(mode="sandbox", origin="sandbox", allowed_dirs=[tmp_path], state_dir=tmp_path)
    a, b = dataset(id=A, name="A", workspace_id="w"), dataset(id=B, name="B", workspace_id="w")
    async with UploadManager(cast(Any, fake), ledger, clock=clock.time, sleep=clock.sleep) as jobs:
        deps = Deps(cast(Any, fake), ledger, jobs, options, clock=clock.time, sleep=clock.sleep)
        # A second server on the same ledger, with its own memory:
        other = Deps(cast(Any, fake), ledger, jobs, options, clock=clock.time, sleep=clock.sleep)

        await deps.remember(a, "created")
        clock.now += 1
        await deps.remember(b, "created")
        for _ in range(5):
            clock.now += 1
            await deps.remember(a, "touched")
        assert writes == [(A, "created"), (B, "created")], "a use that changes nothing but the time stays in memory"
        assert [d.dataset_id for d in await deps.known_datasets()] == [A, B], "this process: A was used last"
        assert [d.dataset_id for d in await other.known_datasets()] == [B, A], "another: the ledger's minute"

        renamed = dataset(id=A, name="A, renamed", workspace_id="w")
        await deps.remember(renamed, "touched")
        assert writes[-1] == (A, "touched"), "a new name is written at once"
        assert [d.name for d in await other.known_datasets()] == ["A, renamed", "B"]

        clock.now += REMEMBER_SECONDS
        await deps.remember(b, "touched")
        assert writes[-1] == (B, "touched"), "a minute on, the time is written again"
        assert [d.dataset_id for d in await other.known_datasets()] == [B, A]
        assert len(writes) == 4
    ledger.close()
