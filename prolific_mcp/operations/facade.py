"""`Operations`: the one object the MCP layer holds. It only forwards each tool to its operation over one `Deps`,
so that the tool registrations stay one declarative call each."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

from prolific_mcp.api.client import ProlificClient
from prolific_mcp.operations import appends, checks, datasets, schemas, uploads
from prolific_mcp.operations.deps import Deps, Progress, ServiceOptions
from prolific_mcp.operations.results import (
    AppendRecordsResult,
    DatasetResult,
    DatasetsResult,
    ImportResult,
    SetSchemaResult,
    SuggestSchemaResult,
    ValidateResult,
    WorkspacesResult,
)
from prolific_mcp.uploads.jobs import UploadManager
from prolific_mcp.uploads.ledger import Ledger


class Operations:
    """Every tool's operation, bound to one `Deps` (see the modules of `prolific_mcp.operations`)."""

    def __init__(
        self,
        client: ProlificClient,
        ledger: Ledger,
        jobs: UploadManager,
        options: ServiceOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.deps = Deps(client, ledger, jobs, options, clock=clock, sleep=sleep)

    async def list_workspaces(self) -> WorkspacesResult:
        return await datasets.list_workspaces(self.deps)

    async def list_datasets(self, workspace_id: str | None = None) -> DatasetsResult:
        return await datasets.list_datasets(self.deps, workspace_id)

    async def get_dataset(self, dataset_id: str) -> DatasetResult:
        return await datasets.get_dataset(self.deps, dataset_id)

    async def create_dataset(
        self,
        name: str,
        workspace_id: str | None = None,
        fields: object = None,
        strict: bool = False,
        legacy_v3: bool = False,
    ) -> DatasetResult:
        return await datasets.create_dataset(self.deps, name, workspace_id, fields, strict, legacy_v3)

    async def set_schema(
        self,
        dataset_id: str,
        fields: object,
        strict: bool,
        *,
        dry_run: bool = False,
        allow_destructive: bool = False,
        wait_seconds: float | None = None,
        progress: Progress | None = None,
    ) -> SetSchemaResult:
        return await schemas.set_schema(
            self.deps,
            dataset_id,
            fields,
            strict,
            dry_run=dry_run,
            allow_destructive=allow_destructive,
            wait_seconds=wait_seconds,
            progress=progress,
        )

    async def upload_file(
        self,
        dataset_id: str,
        path: str | None = None,
        content: str | None = None,
        filename: str | None = None,
        fmt: str | None = None,
        *,
        wait_seconds: float | None = None,
        force: bool = False,
        progress: Progress | None = None,
    ) -> ImportResult:
        return await uploads.upload_file(
            self.deps,
            dataset_id,
            path,
            content,
            filename,
            fmt,
            wait_seconds=wait_seconds,
            force=force,
            progress=progress,
        )

    async def get_import_status(
        self, dataset_id: str, import_id: str, *, wait_seconds: float | None = None, progress: Progress | None = None
    ) -> ImportResult:
        return await uploads.get_import_status(
            self.deps, dataset_id, import_id, wait_seconds=wait_seconds, progress=progress
        )

    async def append_records(
        self, dataset_id: str, records: object, *, wait_seconds: float | None = None, progress: Progress | None = None
    ) -> AppendRecordsResult:
        return await appends.append_records(
            self.deps, dataset_id, records, wait_seconds=wait_seconds, progress=progress
        )

    async def validate_file(
        self,
        path: str,
        dataset_id: str | None = None,
        fields: object = None,
        strict: bool = False,
        fmt: str | None = None,
    ) -> ValidateResult:
        return await checks.validate_file(self.deps, path, dataset_id, fields, strict, fmt)

    async def suggest_schema(self, path: str, fmt: str | None = None) -> SuggestSchemaResult:
        return await checks.suggest_schema(self.deps, path, fmt)
