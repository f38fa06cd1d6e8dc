"""The operations behind the tools, free of any transport: each returns a result model with its human text.

The MCP layer calls these and only turns `OperationError`/`ProlificError` into tool errors; everything an agent
reads (what happened, what to do next) is written here.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio

from prolific_mcp.api.client import ProlificClient
from prolific_mcp.api.errors import ConflictError, ProlificError
from prolific_mcp.api.models import Dataset, DatasetSchema, ImportJob, MigrationJob
from prolific_mcp.ids import InvalidIdError, check_id
from prolific_mcp.operations.results import (
    AppendRecordsResult,
    DatasetResult,
    DatasetsResult,
    DatasetSummary,
    FieldInfo,
    ImportInfo,
    ImportResult,
    MigrationInfo,
    Mode,
    PreflightInfo,
    RejectionGroupInfo,
    SchemaChange,
    SetSchemaResult,
    SuggestSchemaResult,
    ValidateResult,
    WorkspaceInfo,
    WorkspacesResult,
)
from prolific_mcp.records import (
    FileFormat,
    RecordRules,
    Schema,
    format_from_filename,
    schema_problems,
)
from prolific_mcp.records.suggest import schema_diff, suggest_schema
from prolific_mcp.text import one_line, plural
from prolific_mcp.uploads.files import (
    INLINE_CONTENT_LIMIT,
    FileAccessError,
    OpenedFile,
    ScanReport,
    file_sha256,
    open_regular_file,
    resolve_path,
    scan_file,
    upload_filename,
)
from prolific_mcp.uploads.jobs import UploadBusyError, UploadJob, UploadManager, UploadPlan, error_items, follow
from prolific_mcp.uploads.ledger import Ledger, UploadKey, UploadRow
from prolific_mcp.uploads.polling import PollPlanner
from prolific_mcp.uploads.summary import (
    RejectionGroup,
    SummaryInput,
    build_summary,
    group_errors,
)

log = logging.getLogger("prolific_mcp.service")

MAX_APPEND_RECORDS: Final = 1000
MAX_APPEND_BYTES: Final = 1024 * 1024
PARKED_GRACE_SECONDS: Final = 3.0
LIVE_ELSEWHERE_SECONDS: Final = 120.0

Progress = Callable[[float, str], Awaitable[None]]


class OperationError(Exception):
    """An operation refused or failed; the message says what was wrong and what to do."""


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """What the service needs from the settings."""

    mode: Mode
    origin: str
    allowed_dirs: Sequence[Path]
    state_dir: Path
    default_workspace_id: str | None = None
    default_wait: float = 50.0
    max_wait: float = 900.0


def _groups_info(groups: Sequence[RejectionGroup]) -> list[RejectionGroupInfo]:
    return [
        RejectionGroupInfo(
            field=g.key if g.field is None else g.field,
            reason=one_line(g.reason, 300),
            count=g.count,
            records=g.records,
            lines=g.lines,
            fix=g.fix,
        )
        for g in groups
    ]


def _scan_groups(report: ScanReport) -> list[RejectionGroup]:
    return [
        RejectionGroup(g.field, g.reason, count=g.count, record_indexes=[n - 1 for n in g.records], lines=g.lines)
        for g in report.groups
    ]


def parse_fields(fields: object, strict: object) -> Schema:
    """Validate `fields` ({key: {type, label?}}, or that as a JSON string) and `strict` into a Schema."""
    if isinstance(fields, str):
        try:
            fields = json.loads(fields)
        except ValueError:
            raise OperationError(
                'fields is not valid JSON: pass an object such as {"review": {"type": "text", "label": "Review"}}'
            ) from None
    if fields is None:
        fields = {}
    if isinstance(strict, str):
        strict = {"true": True, "false": False}.get(strict.strip().lower(), strict)
    raw = {"strict": strict, "fields": fields}
    problems = schema_problems(raw)
    if problems:
        listed = "; ".join((f"{p.field}: " if p.field else "") + p.message for p in problems[:10])
        raise OperationError(f"the schema is not valid: {listed}. Fix these and call again (suggest_schema helps).")
    return Schema.from_dict(raw)


def _api_schema(schema: Schema) -> DatasetSchema:
    return DatasetSchema.model_validate(schema.to_dict())


def _local_schema(dataset: Dataset) -> Schema | None:
    if dataset.dataset_schema is None:
        return None
    raw = dataset.dataset_schema.to_api()
    if schema_problems(raw):
        # The live schema may use types this version does not know: keep it, but check only what we know.
        known = {k: v for k, v in raw["fields"].items() if not schema_problems({"strict": True, "fields": {k: v}})}
        raw = {"strict": raw["strict"], "fields": known}
    return Schema.from_dict(raw)


def _version(dataset: Dataset) -> int:
    return 4 if dataset.is_v4 else 3


class DatasetService:
    """Every tool's operation, against one API origin, one ledger and one upload manager."""

    def __init__(
        self,
        client: ProlificClient,
        ledger: Ledger,
        manager: UploadManager,
        options: ServiceOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.manager = manager
        self.options = options
        self._clock = clock
        self._sleep = sleep
        self._account: str | None = None
        self._account_lock = anyio.Lock()

    # ----- helpers -----

    @property
    def mode(self) -> Mode:
        return self.options.mode

    @property
    def rules(self) -> RecordRules:
        return RecordRules()

    def clamp_wait(self, wait_seconds: float | None) -> float:
        if wait_seconds is None:
            return min(self.options.default_wait, self.options.max_wait)
        return max(0.0, min(float(wait_seconds), self.options.max_wait))

    async def account_id(self) -> str:
        """The token's user id (from users/me, once per process): part of every ledger key."""
        async with self._account_lock:
            if self._account is None:
                self._account = (await self.client.get_me()).id
            return self._account

    async def _remember(self, dataset: Dataset, source: str) -> None:
        account = await self.account_id()
        await anyio.to_thread.run_sync(
            lambda: self.ledger.remember_dataset(
                self.options.origin,
                account,
                dataset.id,
                source=source,  # type: ignore[arg-type]
                name=dataset.name,
                workspace_id=dataset.workspace_id,
            )
        )

    @staticmethod
    def _id(value: object, kind: str) -> str:
        try:
            return check_id(value, kind)
        except InvalidIdError as exc:
            raise OperationError(str(exc)) from None

    # ----- workspaces and datasets -----

    async def list_workspaces(self) -> WorkspacesResult:
        workspaces = await self.client.list_workspaces()
        infos = [
            WorkspaceInfo(id=w.id, title=one_line(w.title or "", 120) or None, description=None) for w in workspaces
        ]
        default = self.options.default_workspace_id or (infos[0].id if len(infos) == 1 else None)
        lines = [f"{plural(len(infos), 'workspace')}:"]
        lines += [f"- {w.title or '(untitled)'} ({w.id})" + (" [default]" if w.id == default else "") for w in infos]
        if default is None and infos:
            lines.append("Pass workspace_id to create_dataset, or set PROLIFIC_WORKSPACE_ID to choose a default.")
        return WorkspacesResult(mode=self.mode, workspaces=infos, default_workspace_id=default).with_text(
            "\n".join(lines)
        )

    async def list_datasets(self, workspace_id: str | None = None) -> DatasetsResult:
        """Datasets this server knows (created or used here) plus those found through the workspace's batches."""
        if workspace_id is not None:
            workspace_id = self._id(workspace_id, "workspace_id")
        account = await self.account_id()
        workspaces = [workspace_id] if workspace_id else [w.id for w in await self.client.list_workspaces()]
        counts: dict[str, int | None] = {}
        found: list[tuple[str, str | None, str]] = []
        for wid in workspaces:
            try:
                batches = await self.client.list_batches(wid)
            except ProlificError as exc:
                log.info("could not list batches of workspace %s: %s", wid, exc)
                continue
            for batch in batches:
                for ds in batch.datasets:
                    counts[ds.id] = ds.total_datapoint_count
                    found.append((ds.id, ds.name, wid))
                for dsid in batch.dataset_ids:
                    if dsid not in counts:
                        counts[dsid] = None
                        found.append((dsid, None, wid))

        def remember_found() -> None:
            for dsid, name, wid in found:
                self.ledger.remember_dataset(
                    self.options.origin, account, dsid, source="batch", name=name, workspace_id=wid
                )

        await anyio.to_thread.run_sync(remember_found)
        known = await anyio.to_thread.run_sync(
            lambda: self.ledger.known_datasets(self.options.origin, account, workspace_id)
        )
        items = [
            DatasetSummary(
                id=d.dataset_id,
                name=one_line(d.name or "", 120) or None,
                workspace_id=d.workspace_id,
                source=d.source,
                total_datapoint_count=counts.get(d.dataset_id),
            )
            for d in known
        ]
        if not items:
            text = (
                "No datasets known yet. Prolific has no endpoint that lists datasets: this list holds the datasets "
                "created or used through this server and those attached to batches. Create one with create_dataset, "
                "or pass a dataset id you already have to get_dataset."
            )
        else:
            lines = [f"{plural(len(items), 'dataset')} known (Prolific has no list endpoint; see 'source'):"]
            lines += [f"- {d.name or '(unnamed)'} ({d.id}), {d.source}" for d in items[:50]]
            text = "\n".join(lines)
        return DatasetsResult(mode=self.mode, datasets=items).with_text(text)

    def _dataset_result(self, dataset: Dataset, batches: list[str] | None = None) -> DatasetResult:
        schema = dataset.dataset_schema
        fields = [FieldInfo(key=k, type=f.type, label=f.label) for k, f in (schema.fields if schema else {}).items()]
        imports = [
            ImportInfo(
                import_id=j.import_id,
                status=j.status,
                filename=one_line(j.filename or "", 120) or None,
                created_at=j.created_at.isoformat() if j.created_at else None,
                accepted_count=j.accepted_count,
                rejected_count=j.rejected_count,
                duplicate_count=j.duplicate_count,
            )
            for j in (dataset.imports or [])[:10]
        ]
        result = DatasetResult(
            mode=self.mode,
            id=dataset.id,
            name=dataset.name,
            version=_version(dataset),
            workspace_id=dataset.workspace_id,
            total_datapoint_count=dataset.total_datapoint_count,
            status=dataset.status,
            strict=schema.strict if schema is not None else None,
            fields=fields,
            imports=imports,
            batches=batches or [],
        )
        return result.with_text(render_dataset(result))

    async def get_dataset(self, dataset_id: str) -> DatasetResult:
        dataset_id = self._id(dataset_id, "dataset_id")
        dataset = await self.client.get_dataset(dataset_id)
        await self._remember(dataset, "touched")
        return self._dataset_result(dataset)

    async def create_dataset(
        self,
        name: str,
        workspace_id: str | None = None,
        fields: object = None,
        strict: bool = False,
        legacy_v3: bool = False,
    ) -> DatasetResult:
        if not isinstance(name, str) or not name.strip():
            raise OperationError("name is empty: give the dataset a name people will recognise")
        name = name.strip()
        if legacy_v3 and fields:
            raise OperationError(
                "legacy_v3 datasets have no schema: drop fields, or create a V4 dataset (legacy_v3=false)"
            )
        schema = None if legacy_v3 else parse_fields(fields, strict)
        wid = await self._workspace(workspace_id)
        dataset = await self.client.create_dataset(name, wid, _api_schema(schema) if schema is not None else None)
        await self._remember(dataset, "created")
        result = self._dataset_result(dataset)
        result.created = True
        if legacy_v3:
            step = f'Next: upload_file(dataset_id="{dataset.id}", path="<your .csv>"): V3 takes CSV files.'
        elif schema is not None and schema.is_empty:
            step = (
                f'Next: set_schema(dataset_id="{dataset.id}", fields=..., strict=false) (suggest_schema helps); an '
                "upload before that waits in pending_schema."
            )
        else:
            step = f'Next: upload_file(dataset_id="{dataset.id}", path="<your .jsonl or .csv>").'
        return result.with_text(f"Created dataset {dataset.name!r} ({dataset.id}).\n{result.text}\n\n{step}")

    async def _workspace(self, workspace_id: str | None) -> str:
        if workspace_id:
            return self._id(workspace_id, "workspace_id")
        if self.options.default_workspace_id:
            return self.options.default_workspace_id
        workspaces = await self.client.list_workspaces()
        if len(workspaces) == 1:
            return workspaces[0].id
        if not workspaces:
            raise OperationError("this account has no workspace: create one in the Prolific app first")
        listed = "; ".join(f"{w.id} ({one_line(w.title or '', 60)})" for w in workspaces[:20])
        raise OperationError(
            f"this account has {len(workspaces)} workspaces, so say which one: pass workspace_id (one of: {listed}) "
            "or set PROLIFIC_WORKSPACE_ID."
        )

    # ----- schemas -----

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
        dataset_id = self._id(dataset_id, "dataset_id")
        new = parse_fields(fields, strict)
        if new.is_empty:
            raise OperationError("fields is empty: a schema needs at least one field")
        wait = self.clamp_wait(wait_seconds)
        dataset = await self.client.get_dataset(dataset_id)
        if not dataset.is_v4:
            raise OperationError(
                f"dataset {dataset_id} is a legacy V3 dataset, which has no schema: create a V4 dataset with "
                "create_dataset(fields=...) and upload to that one"
            )
        await self._remember(dataset, "touched")
        old = _local_schema(dataset)
        diff = schema_diff(old, new)
        has_data = (dataset.total_datapoint_count or 0) > 0
        changes = SchemaChange.model_validate(diff.as_dict())
        if has_data and diff.task_group_moved:
            before, after = diff.task_group_moved
            raise OperationError(
                f"the dataset has {dataset.total_datapoint_count:,} datapoints, so its task_group_id field cannot move "
                f"({before or 'none'} → {after or 'none'}): keep {before or 'no'} task_group_id field, or create a new "
                "dataset for the new grouping"
            )
        if has_data and diff.destructive and not allow_destructive and not dry_run:
            raise OperationError(
                f"this change would {'; '.join(diff.describe())} on a dataset with "
                f"{dataset.total_datapoint_count:,} datapoints: existing values of those fields would be re-checked "
                "and may be set to null. Call again with allow_destructive=true to go ahead (dry_run=true shows the "
                "diff only)."
            )
        summary = "; ".join(diff.describe())
        if dry_run:
            return SetSchemaResult(
                mode=self.mode, dataset_id=dataset_id, applied=False, dry_run=True, changes=changes, finished=True
            ).with_text(f"Dry run on {dataset_id}: would {summary}. Nothing was changed.")
        if diff.empty:
            return SetSchemaResult(
                mode=self.mode, dataset_id=dataset_id, applied=False, dry_run=False, changes=changes, finished=True
            ).with_text(f"The schema of {dataset_id} already matches: nothing to change.")
        parked = [j.import_id for j in dataset.imports or [] if j.status == "pending_schema"]
        update = await self.client.update_schema(dataset_id, _api_schema(new))
        lines = [f"Schema of {dataset_id} updated: {summary}."]
        migration_info: MigrationInfo | None = None
        finished = True
        if update.migration_job_id:
            migration = await self._wait_migration(dataset_id, update.migration_job_id, wait, progress)
            migration_info = MigrationInfo(
                job_id=migration.job_id,
                status=migration.status,
                reprocessed_count=migration.reprocessed_count,
                failed_count=migration.failed_count,
                reason=one_line(migration.reason, 300) if migration.reason else None,
            )
            finished = migration.is_terminal
            lines.append(describe_migration(dataset_id, migration))
        released: list[str] = []
        still: list[str] = []
        if parked:
            released, still = await self._recheck_parked(dataset_id, parked)
            if released:
                lines.append(
                    f"{plural(len(released), 'parked import')} moved on: follow with "
                    + ", ".join(f'get_import_status(dataset_id="{dataset_id}", import_id="{i}")' for i in released[:3])
                )
            if still:
                lines.append(
                    f"{plural(len(still), 'parked import')} did not move on ({', '.join(still[:5])}): upload those "
                    "files again with upload_file."
                )
        return SetSchemaResult(
            mode=self.mode,
            dataset_id=dataset_id,
            applied=True,
            dry_run=False,
            changes=changes,
            migration=migration_info,
            finished=finished,
            released_imports=released,
            still_parked=still,
        ).with_text("\n".join(lines))

    async def _wait_migration(
        self, dataset_id: str, job_id: str, wait: float, progress: Progress | None
    ) -> MigrationJob:
        planner = PollPlanner()
        deadline = self._clock() + wait
        value = 0.0
        while True:
            migration = await self.client.get_migration(dataset_id, job_id)
            planner.observe(self._clock(), migration.status, migration.reprocessed_count)
            if progress is not None:
                value = 100.0 if migration.is_terminal else min(99.0, value + 1.0)
                done = f": {migration.reprocessed_count:,} datapoints so far" if migration.reprocessed_count else ""
                await progress(value, f"schema migration {migration.status}{done}")
            if migration.is_terminal:
                return migration
            delay = planner.next_delay()
            if self._clock() + delay > deadline:
                return migration
            await self._sleep(delay)

    async def _recheck_parked(self, dataset_id: str, parked: list[str]) -> tuple[list[str], list[str]]:
        """API.md §12.2: after the first schema, see which pending_schema imports move on within a grace."""
        remaining = set(parked)
        released: list[str] = []
        deadline = self._clock() + PARKED_GRACE_SECONDS
        while remaining:
            for import_id in sorted(remaining):
                try:
                    job = await self.client.get_import(dataset_id, import_id)
                except ProlificError:
                    continue
                if job.status != "pending_schema":
                    released.append(import_id)
                    remaining.discard(import_id)
            if not remaining or self._clock() >= deadline:
                break
            await self._sleep(0.5)
        return released, sorted(remaining)

    # ----- uploads -----

    def _resolve(self, path: str) -> Path:
        try:
            return resolve_path(path, list(self.options.allowed_dirs))
        except FileAccessError as exc:
            raise OperationError(str(exc)) from None

    def _open_path(self, path: str | Path) -> OpenedFile:
        try:
            resolved = path if isinstance(path, Path) else resolve_path(path, list(self.options.allowed_dirs))
            return open_regular_file(resolved)
        except FileAccessError as exc:
            raise OperationError(str(exc)) from None

    def _open_inline(self, content: str, filename: str) -> OpenedFile:
        data = content.encode("utf-8")
        if len(data) > INLINE_CONTENT_LIMIT:
            raise OperationError(
                f"content is {len(data):,} bytes, over the 1 MiB inline limit: save it to a file inside an allowed "
                "directory and pass path instead"
            )
        if not data.strip():
            raise OperationError("content is empty: there is nothing to upload")
        folder = self.options.state_dir / "inline"
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="inline-", suffix="-" + os.path.basename(filename)[-60:], dir=folder)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        try:
            return open_regular_file(Path(name))
        finally:
            os.unlink(name)

    def _format(self, name: str, fmt: str | None, v3: bool | None = None) -> FileFormat:
        if fmt:
            chosen = fmt.strip().lower().lstrip(".")
            if chosen == "ndjson":
                chosen = "jsonl"
            if chosen not in ("jsonl", "csv"):
                raise OperationError(f"format {fmt!r} is not supported: use 'jsonl' or 'csv'")
            return chosen  # type: ignore[return-value]
        detected = format_from_filename(name)
        if detected is None:
            raise OperationError(
                f"{os.path.basename(name)!r} is not a .jsonl, .ndjson or .csv file: convert it, or pass "
                "format='jsonl' or format='csv' if the content already is one"
            )
        return detected

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
        dataset_id = self._id(dataset_id, "dataset_id")
        if (path is None) == (content is None):
            raise OperationError(
                "pass either path (a file inside the allowed directories) or content with filename (≤ 1 MiB), "
                "not both and not neither"
            )
        if content is not None and not filename:
            raise OperationError("content needs a filename (e.g. 'records.jsonl') so the format is known")
        resolved = self._resolve(path) if path is not None else None
        display = os.path.basename(path if path is not None else str(filename))
        file_format = self._format(display, fmt)
        wait = self.clamp_wait(wait_seconds)
        opened = self._open_path(resolved) if resolved is not None else self._open_inline(str(content), str(filename))
        handed_to_job = False
        try:
            dataset = await self.client.get_dataset(dataset_id)
            v3 = not dataset.is_v4
            if v3 and file_format != "csv":
                raise OperationError(
                    f"dataset {dataset_id} is a legacy V3 dataset, which takes CSV files only: convert the file to "
                    "CSV, or create a V4 dataset (create_dataset) for JSONL"
                )
            await self._remember(dataset, "touched")
            schema = None if v3 else _local_schema(dataset)
            report = await anyio.to_thread.run_sync(
                lambda: scan_file(opened.fd, file_format, schema, rules=self.rules, expected_size=opened.size)
            )
            preflight = PreflightInfo(
                sha256=report.sha256,
                size=report.size,
                record_count=report.record_count,
                expected_rejections=report.rejected,
                groups=_groups_info(_scan_groups(report)),
            )
            if report.failure is not None:
                raise OperationError(f"{display} cannot be imported: {report.failure}. Nothing was uploaded.")
            key = UploadKey(self.options.origin, await self.account_id(), dataset_id, report.sha256, report.size)
            plan = UploadPlan(
                key=key,
                dataset_id=dataset_id,
                filename=upload_filename(display, file_format),
                fmt=file_format,
                size=report.size,
                record_count=report.record_count,
                opened=opened,
                local_path=opened.path if path is not None else None,
                v3=v3,
            )
            job, resumed, orphans = await self._job_for(plan, force, dataset)
            if job is None:
                assert resumed is not None
                return await self._stored_outcome(resumed, dataset, plan, preflight)
            handed_to_job = job.plan is plan
            finished = await follow(job, wait, progress)
            result = await self._job_result(job, finished, preflight)
            result.orphaned_imports = sorted(set(result.orphaned_imports) | set(orphans))
            return result.with_text(self._with_orphans(result))
        except UploadBusyError as exc:
            raise OperationError(str(exc)) from None
        finally:
            if not handed_to_job:
                opened.close()

    async def _job_for(
        self, plan: UploadPlan, force: bool, dataset: Dataset
    ) -> tuple[UploadJob | None, UploadRow | None, list[str]]:
        """Apply the ledger's resume rules (DESIGN §5): (a job to follow, or None with the stored row; orphans)."""
        live = self.manager.job_for_key(plan.key)
        if live is not None:
            return live, None, []
        row = await anyio.to_thread.run_sync(self.ledger.latest_upload, plan.key)
        orphans: list[str] = []
        if row is not None and not force:
            if row.state == "uploaded" and row.import_id:
                return self.manager.watch_import(plan, row), None, []
            if row.state in ("complete", "partial"):
                return None, row, []
            if row.state == "pending_schema" and row.import_id:
                schema = dataset.dataset_schema
                if schema is not None and not schema.is_empty:
                    current = await self.client.get_import(plan.dataset_id, row.import_id)
                    if current.status != "pending_schema":
                        return self.manager.watch_import(plan, row), None, []
                else:
                    return None, row, []
            if row.state in ("url_issued", "uploading"):
                alive = row.owner_alive()
                recent = time.time() - row.updated_at < LIVE_ELSEWHERE_SECONDS
                if alive or (alive is None and recent):
                    raise OperationError(
                        f"another server process is uploading this file to dataset {plan.dataset_id} right now "
                        f"(import {row.import_id}): follow it with get_import_status(dataset_id="
                        f'"{plan.dataset_id}", import_id="{row.import_id}") instead of uploading it twice'
                    )
                await anyio.to_thread.run_sync(self.ledger.set_state, row.id, "orphaned")
                if row.import_id:
                    orphans.append(row.import_id)
        return self.manager.start_upload(plan), None, orphans

    async def _stored_outcome(
        self, row: UploadRow, dataset: Dataset, plan: UploadPlan, preflight: PreflightInfo
    ) -> ImportResult:
        """The outcome of an identical earlier upload, from the ledger (and the rejected file if not yet written)."""
        outcome = row.outcome or {}
        job = ImportJob.model_validate({"import_id": row.import_id or "-", **outcome, "status": row.state})
        fake = UploadJob(plan, phase="done", import_id=row.import_id, ledger_row=row, latest=job)
        fake.rejected_file = row.rejected_file
        if row.state == "partial" and row.rejected_file is None and job.errors:
            await self.manager.explain(fake, write_file=True)
        result = await self._job_result(fake, True, preflight, from_ledger=True)
        if row.state == "pending_schema":
            prefix = (
                f"This file was uploaded before (import {row.import_id}) and is parked in pending_schema until the "
                f'dataset has a schema: call set_schema(dataset_id="{plan.dataset_id}", ...) first.'
            )
        else:
            prefix = (
                f"This exact file was already imported into {plan.dataset_id} (import {row.import_id}); here is the "
                "stored outcome. Pass force=true to upload it again (duplicates are counted, not written twice)."
            )
        return result.with_text(prefix + "\n\n" + result.text)

    async def _job_result(
        self, job: UploadJob, finished: bool, preflight: PreflightInfo | None, *, from_ledger: bool = False
    ) -> ImportResult:
        plan = job.plan
        value, message = job.progress()
        if job.error is not None:
            if job.put_failed and job.import_id:
                raise OperationError(
                    f"{job.error} (import {job.import_id} never received the whole file: it stays 'uninitialised', "
                    "which is harmless)"
                )
            raise job.error
        if job.cancelled:
            raise OperationError(
                f"the upload of {plan.filename} was cancelled before Prolific received the whole file: nothing was "
                "imported; call upload_file again to start over"
            )
        latest = job.latest
        status = job.terminal_status or (latest.status if latest is not None else job.phase)
        result = ImportResult(
            mode=self.mode,
            dataset_id=plan.dataset_id,
            import_id=job.import_id,
            filename=plan.filename,
            status=status.lower() if plan.v3 and status in ("READY", "ERROR") else status,
            finished=finished and job.terminal_status is not None,
            progress=round(value, 1),
            record_count=plan.record_count,
            preflight=preflight,
            orphaned_imports=list(job.orphans),
            from_ledger=from_ledger,
            rejected_file=job.rejected_file,
            rejected_written=job.rejected_written,
        )
        if not result.finished:
            result.next_call = self._next_call(job)
            ahead = f" ({message})" if message else ""
            wait_line = (
                f"Still going after the wait{ahead}. The upload continues in the background."
                if not job.watch_gave_up
                else "The import has not finished after the longest wait; it may still finish at Prolific."
            )
            return result.with_text(f"{wait_line}\nNext: {result.next_call}")
        if plan.v3:
            ok = job.v3_status == "READY"
            result.status = "complete" if ok else "failed"
            text = (
                f"Dataset {plan.dataset_id} is READY with {plan.filename} ({plural(plan.record_count or 0, 'row')})."
                if ok
                else f"Prolific could not process {plan.filename}: the dataset status is ERROR. Check the CSV (a "
                "header row, UTF-8, one row per datapoint) and upload it again."
            )
            return result.with_text(text)
        assert latest is not None
        if job.groups is None:
            await self.manager.explain(job)
        groups = job.groups or []
        dataset_total: int | None = None
        try:
            dataset = await self.client.get_dataset(plan.dataset_id)
            dataset_total = dataset.total_datapoint_count
        except ProlificError:
            dataset = None
        result.accepted_count = latest.accepted_count
        result.rejected_count = latest.rejected_count
        result.duplicate_count = latest.duplicate_count
        result.total_datapoint_count = dataset_total
        result.reason = one_line(latest.reason, 500) if latest.reason else None
        result.groups = _groups_info(groups)
        text = build_summary(
            SummaryInput(
                dataset_id=plan.dataset_id,
                import_id=job.import_id,
                filename=plan.filename,
                status=latest.status,
                accepted=latest.accepted_count or 0,
                rejected=latest.rejected_count or 0,
                duplicates=latest.duplicate_count or 0,
                record_count=plan.record_count,
                total_datapoints=dataset_total,
                reason=latest.reason,
                groups=groups,
                rejected_file=job.rejected_file,
                rejected_written=job.rejected_written,
                suggested_schema=job.suggested_schema,
            )
        )
        if latest.status == "partial" and job.rejected_file is None and plan.local_path is None and latest.errors:
            text += "\nNo rejected-records file was written (the data came inline); the records are listed above."
        return result.with_text(text)

    def _next_call(self, job: UploadJob) -> str:
        plan = job.plan
        if job.import_id and not job.in_put:
            return f'get_import_status(dataset_id="{plan.dataset_id}", import_id="{job.import_id}", wait_seconds=50)'
        return (
            f'upload_file(dataset_id="{plan.dataset_id}", path=<the same file>, wait_seconds=50): the same file '
            "resumes this upload instead of starting another"
        )

    @staticmethod
    def _with_orphans(result: ImportResult) -> str:
        if not result.orphaned_imports:
            return result.text
        return (
            result.text
            + f"\nLeft behind: {plural(len(result.orphaned_imports), 'unused import')} that never received a file "
            f"({', '.join(result.orphaned_imports[:5])}); they stay 'uninitialised' and are harmless."
        )

    async def get_import_status(
        self,
        dataset_id: str,
        import_id: str,
        *,
        wait_seconds: float | None = None,
        progress: Progress | None = None,
    ) -> ImportResult:
        """Read-only: follow an import (the live upload job if this process runs it); never writes files."""
        dataset_id = self._id(dataset_id, "dataset_id")
        import_id = self._id(import_id, "import_id")
        wait = self.clamp_wait(wait_seconds)
        job = self.manager.job_for_import(dataset_id, import_id)
        if job is not None:
            finished = await follow(job, wait, progress)
            return await self._job_result(job, finished, None)
        row = await anyio.to_thread.run_sync(self.ledger.upload_by_import, self.options.origin, dataset_id, import_id)
        plan = UploadPlan(
            key=row.key if row is not None else UploadKey(self.options.origin, "", dataset_id, "", 0),
            dataset_id=dataset_id,
            filename=row.filename if row is not None else import_id,
            fmt=(row.format if row is not None else "jsonl"),  # type: ignore[arg-type]
            size=row.key.size if row is not None else 0,
            record_count=row.record_count if row is not None else None,
            opened=None,
            local_path=None,
            write_rejected=False,
        )
        watcher = UploadJob(plan, phase="watching", import_id=import_id, ledger_row=row)
        try:
            planner = PollPlanner(total_records=plan.record_count, started_at=self._clock())
            deadline = self._clock() + wait
            last = -1.0
            while True:
                watcher.latest = await self.client.get_import(dataset_id, import_id)
                planner.observe(self._clock(), watcher.latest.status, watcher.latest.processed_offset)
                value, message = watcher.progress()
                if progress is not None and value > last:
                    await progress(value, message)
                    last = value
                if watcher.latest.is_terminal:
                    if watcher.latest.errors or watcher.latest.status == "pending_schema":
                        plan.opened = await anyio.to_thread.run_sync(self._reopen_for_excerpts, row)
                    if row is not None and not row.is_terminal:
                        outcome = watcher.latest.model_dump(mode="json", by_alias=True)
                        status: Any = watcher.latest.status
                        await anyio.to_thread.run_sync(partial(self.ledger.set_state, row.id, status, outcome))
                    if row is not None:
                        watcher.rejected_file = row.rejected_file
                    return await self._job_result(watcher, True, None)
                delay = planner.next_delay()
                if self._clock() + delay > deadline:
                    return await self._job_result(watcher, False, None)
                await self._sleep(delay)
        finally:
            if plan.opened is not None:
                plan.opened.close()

    def _reopen_for_excerpts(self, row: UploadRow | None) -> OpenedFile | None:
        """The ledger's local file, if it is still allowed and still the same content (size and sha256)."""
        if row is None or not row.local_path:
            return None
        try:
            opened = open_regular_file(resolve_path(row.local_path, list(self.options.allowed_dirs)))
        except FileAccessError:
            return None
        if opened.size != row.key.size:
            opened.close()
            return None
        if file_sha256(opened.fd) != row.key.sha256:
            opened.close()
            return None
        return opened

    # ----- append, validate, suggest -----

    async def append_records(
        self,
        dataset_id: str,
        records: object,
        *,
        wait_seconds: float | None = None,
        progress: Progress | None = None,
    ) -> AppendRecordsResult:
        dataset_id = self._id(dataset_id, "dataset_id")
        if isinstance(records, str):
            try:
                records = json.loads(records)
            except ValueError:
                raise OperationError("records is not valid JSON: pass a list of objects") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise OperationError('records must be a list of objects, e.g. [{"review": "Great"}]')
        if not records:
            raise OperationError("records is empty: pass at least one record")
        if len(records) > MAX_APPEND_RECORDS:
            raise OperationError(
                f"{len(records):,} records is over the 1,000 an append takes: write them to a .jsonl file and use "
                "upload_file"
            )
        body = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
        if len(body) > MAX_APPEND_BYTES:
            raise OperationError(
                f"the records are {len(body):,} bytes, over 1 MiB: write them to a .jsonl file and use upload_file"
            )
        wait = self.clamp_wait(wait_seconds)
        deadline = self._clock() + wait
        planner = PollPlanner()
        while True:
            try:
                answer = await self.client.append_datapoints(dataset_id, body)
                break
            except ConflictError:
                delay = planner.next_delay()
                if self._clock() + delay > deadline:
                    raise OperationError(
                        f"an import or schema migration is still running on {dataset_id}, and appends wait for it: "
                        "call append_records again in a minute (get_dataset shows the imports)"
                    ) from None
                if progress is not None:
                    await progress(min(99.0, 10.0 * planner.requests), "waiting for a running import to finish")
                planner.observe(self._clock(), "queued", None)
                await self._sleep(delay)
        groups = group_errors(error_items(answer), answer.rejected_count or 0)  # type: ignore[arg-type]
        accepted, rejected = answer.accepted_count or 0, answer.rejected_count or 0
        duplicates = answer.duplicate_count or 0
        lines = [
            f"Appended to {dataset_id}: {plural(accepted, 'record')} accepted ({duplicates:,} already there), "
            f"{rejected:,} rejected."
        ]
        for n, group in enumerate(groups[:10], 1):
            lines.append(
                f"{n}. {one_line(group.key or 'record', 60)}: {one_line(group.reason, 160)} — records "
                f"{', '.join(str(r) for r in group.records[:10])}. Fix: {group.fix}."
            )
        if answer.retried:
            lines.append("(The request was sent more than once after a network error; appends are idempotent.)")
        if accepted - duplicates > 0:
            lines.append("New datapoints reach a running batch after a batch sync.")
        return AppendRecordsResult(
            mode=self.mode,
            dataset_id=dataset_id,
            accepted_count=accepted,
            rejected_count=rejected,
            duplicate_count=duplicates,
            groups=_groups_info(groups),
            retried=answer.retried,
        ).with_text("\n".join(lines))

    async def validate_file(
        self,
        path: str,
        dataset_id: str | None = None,
        fields: object = None,
        strict: bool = False,
        fmt: str | None = None,
    ) -> ValidateResult:
        if dataset_id is None and fields is None:
            raise OperationError("pass dataset_id (to check against its schema) or fields and strict")
        resolved = self._resolve(path)
        file_format = self._format(path, fmt)
        with self._open_path(resolved) as opened:
            if dataset_id is not None:
                dataset = await self.client.get_dataset(self._id(dataset_id, "dataset_id"))
                schema = _local_schema(dataset) if dataset.is_v4 else None
            else:
                schema = parse_fields(fields, strict)
            report = await anyio.to_thread.run_sync(
                lambda: scan_file(opened.fd, file_format, schema, rules=self.rules, expected_size=opened.size)
            )
        groups = _scan_groups(report)
        exact = self.mode == "sandbox"
        verdict = f"{os.path.basename(path)}: {plural(report.record_count, 'record')}, " + (
            f"{report.rejected:,} would be rejected"
            if exact
            else f"{report.rejected:,} likely to be rejected (our local rules approximate Prolific's)"
        )
        lines = [verdict + "." if report.failure is None else f"{verdict}. It cannot be imported: {report.failure}."]
        for n, group in enumerate(groups[:15], 1):
            lines.append(
                f"{n}. {one_line(group.key or 'record', 60)}: {one_line(group.reason, 160)} — "
                f"{plural(group.count, 'record')}, first {', '.join(str(r) for r in group.records[:10])}. "
                f"Fix: {group.fix}."
            )
        if report.failure is None and not report.rejected:
            lines.append("No problems found: upload it with upload_file.")
        return ValidateResult(
            mode=self.mode,
            ok=report.failure is None,
            failure=report.failure,
            format=file_format,
            record_count=report.record_count,
            expected_rejections=report.rejected,
            groups=_groups_info(groups),
            sha256=report.sha256,
            size=report.size,
        ).with_text("\n".join(lines))

    async def suggest_schema(self, path: str, fmt: str | None = None) -> SuggestSchemaResult:
        resolved = self._resolve(path)
        file_format = self._format(path, fmt)
        with self._open_path(resolved) as opened:
            try:
                suggestion = await anyio.to_thread.run_sync(lambda: suggest_schema(opened.fd, file_format))
            except ValueError as exc:
                raise OperationError(f"{os.path.basename(path)} cannot be read: {exc}") from None
        lines = [f"Suggested schema from {plural(suggestion.sampled, 'record')} of {os.path.basename(path)}:"]
        for key, spec in suggestion.fields.items():
            lines.append(f"- {key}: {spec['type']} ({suggestion.reasons.get(key, '')})")
        lines += [f"Note: {n}" for n in suggestion.notes]
        lines.append(
            "Next: create_dataset(name=..., fields=<these fields>, strict=false), or set_schema on an existing "
            "dataset; adjust types first if one is wrong."
        )
        return SuggestSchemaResult(
            mode=self.mode,
            fields=suggestion.fields,
            strict=suggestion.strict,
            sampled_records=suggestion.sampled,
            reasons=suggestion.reasons,
            notes=suggestion.notes,
        ).with_text("\n".join(lines))


def render_dataset(result: DatasetResult) -> str:
    """A readable view of a dataset: identity, counts, the schema as a table, the latest imports."""
    lines = [
        f"{result.name or '(unnamed)'} ({result.id}), V{result.version}, workspace {result.workspace_id or '?'}",
        f"Datapoints: {result.total_datapoint_count if result.total_datapoint_count is not None else 'unknown'}"
        + (f"; status {result.status}" if result.status else ""),
    ]
    if result.version == 4:
        if result.fields:
            lines.append(f"Schema (strict={str(result.strict).lower()}):")
            lines.append("| field | type | label |")
            lines.append("|---|---|---|")
            lines += [f"| {f.key} | {f.type} | {one_line(f.label or '', 60)} |" for f in result.fields]
        else:
            lines.append("Schema: none yet (uploads wait in pending_schema until set_schema).")
        if result.imports:
            lines.append("Latest imports:")
            for imp in result.imports[:5]:
                counts = ""
                if imp.accepted_count is not None:
                    counts = f": {imp.accepted_count:,} accepted"
                    if imp.rejected_count:
                        counts += f", {imp.rejected_count:,} rejected"
                lines.append(f"- {imp.import_id} {imp.status} {imp.filename or ''}{counts}")
    if result.batches:
        lines.append("Batches: " + ", ".join(result.batches))
    return "\n".join(lines)


def describe_migration(dataset_id: str, migration: MigrationJob) -> str:
    """One or two sentences on a schema migration's state."""
    if migration.status == "complete":
        return f"Migration {migration.job_id} complete: {migration.reprocessed_count or 0:,} datapoints re-checked."
    if migration.status == "partial":
        return (
            f"Migration {migration.job_id} partial: {migration.reprocessed_count or 0:,} re-checked, "
            f"{migration.failed_count or 0:,} values could not be converted and were set to null. Check those fields "
            "before setting up a batch."
        )
    if migration.status == "failed":
        return (
            f"Migration {migration.job_id} failed: {one_line(migration.reason or 'no reason given', 300)}. The schema "
            "version changed but the datapoints were not re-checked; try set_schema again or contact Prolific."
        )
    return (
        f'Migration {migration.job_id} is still {migration.status}. Next: get_dataset(dataset_id="{dataset_id}") '
        "later to see the schema in force."
    )
