"""Operations tested directly, against a small in-memory fake of the API client and a virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from prolific_mcp.api.errors import ConflictError, NotFoundError, Resource
from prolific_mcp.api.models import AppendResult, Dataset, ImportJob, MigrationJob, SchemaUpdate, User
from prolific_mcp.operations.deps import Deps, ServiceOptions
from prolific_mcp.uploads.jobs import UploadManager
from prolific_mcp.uploads.ledger import Ledger

DS = "0192a3b5-e8f9-7a0b-1c2d-3e4f5a6b7c8d"
FIELDS = {"review": {"type": "text", "label": "Review"}, "source": {"type": "metadata"}}


class Clock:
    """A virtual monotonic clock: sleeping advances it at once, and every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class FakeClient:
    """The API calls the operations make, answered from memory; each list is consumed in order."""

    datasets: dict[str, Dataset] = field(default_factory=dict)
    imports: dict[str, list[ImportJob | Exception]] = field(default_factory=dict)
    migrations: list[MigrationJob | Exception] = field(default_factory=list)
    appends: list[AppendResult | Exception] = field(default_factory=list)
    migration_job_id: str | None = None
    calls: list[str] = field(default_factory=list)

    async def get_me(self) -> User:
        return User(id="user-1")

    async def get_dataset(self, dataset_id: str) -> Dataset:
        self.calls.append(f"get_dataset {dataset_id}")
        if dataset_id not in self.datasets:
            raise NotFoundError("not found", resource=Resource("dataset", dataset_id))
        return self.datasets[dataset_id]

    async def update_schema(self, dataset_id: str, schema: Any) -> SchemaUpdate:
        self.calls.append(f"update_schema {dataset_id}")
        return SchemaUpdate(dataset=self.datasets[dataset_id], migration_job_id=self.migration_job_id)

    async def get_migration(self, dataset_id: str, job_id: str) -> MigrationJob:
        return _next(self.migrations)

    async def get_import(self, dataset_id: str, import_id: str) -> ImportJob:
        self.calls.append(f"get_import {import_id}")
        return _next(self.imports[import_id])

    async def append_datapoints(self, dataset_id: str, body: bytes) -> AppendResult:
        self.calls.append(f"append {len(body)}")
        return _next(self.appends)


def _next(queue: list[Any]) -> Any:
    item = queue.pop(0) if len(queue) > 1 else queue[0]
    if isinstance(item, Exception):
        raise item
    return item


def conflict() -> ConflictError:
    return ConflictError("Prolific refused the change (HTTP 409)", status=409)


def dataset(*, total: int = 0, fields: dict[str, Any] | None = FIELDS, v4: bool = True, **extra: Any) -> Dataset:
    data: dict[str, Any] = {"id": DS, "name": "Reviews", "total_datapoint_count": total, **extra}
    if v4:
        data["schema"] = {"strict": False, "fields": fields or {}}
    return Dataset.model_validate(data)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake() -> FakeClient:
    return FakeClient()


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "state" / "ledger.sqlite3")


@pytest.fixture
async def make_deps(
    fake: FakeClient, ledger: Ledger, clock: Clock, tmp_path: Path
) -> AsyncIterator[Callable[..., Deps]]:
    """Deps over the fake client; `make_deps(default_wait=..., max_wait=...)` changes the options."""
    async with UploadManager(cast(Any, fake), ledger, clock=clock.time, sleep=clock.sleep) as jobs:

        def make(**options: Any) -> Deps:
            opts = ServiceOptions(
                mode="sandbox", origin="sandbox", allowed_dirs=[tmp_path], state_dir=tmp_path / "state", **options
            )
            return Deps(cast(Any, fake), ledger, jobs, opts, clock=clock.time, sleep=clock.sleep)

        yield make
    ledger.close()
