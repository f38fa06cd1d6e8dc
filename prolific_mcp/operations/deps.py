"""What every operation takes: one `Deps` (the API client, the ledger, the upload jobs, the options), plus the
argument checks the operations share (ids, wait, local paths, formats, schemas).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeVar

import anyio

from prolific_mcp.api.client import ProlificClient
from prolific_mcp.api.models import Dataset, DatasetSchema, ImportJob, MigrationJob
from prolific_mcp.ids import InvalidIdError, check_id
from prolific_mcp.operations.results import Mode, field_list
from prolific_mcp.records import FileFormat, Schema, format_from_filename, schema_problems
from prolific_mcp.uploads.files import FileAccessError, OpenedFile, open_regular_file, resolve_path
from prolific_mcp.uploads.jobs import UploadManager
from prolific_mcp.uploads.ledger import SOURCE_RANK, KnownDataset, Ledger
from prolific_mcp.uploads.polling import PollPlanner, poll_until

T = TypeVar("T")

Progress = Callable[[float, str], Awaitable[None]]
"""Reports (value 0–100, a message a person can read) to the caller."""

REMEMBER_SECONDS: Final = 60.0
"""A dataset this process noted in the ledger less than this long ago, with the same name, workspace and source, is
not written again: only its time in memory moves (list_datasets orders this process's datasets by it). Other
processes see its `last_seen` to the minute (docs/performance.md, goal 9)."""
REMEMBERED_MAX: Final = 10_000
"""At most this many datasets noted in memory (then forgotten at once: the next use writes again)."""

MAX_APPEND_BYTES: Final = 1024 * 1024
"""The most bytes of JSONL one append_records call sends (our limit, below Prolific's): more belongs in a file."""


@dataclass(slots=True)
class _Noted:
    """What this process last wrote to the ledger about one dataset, and when it last used it (ledger clock)."""

    written: float
    seen: float
    name: str | None
    workspace_id: str | None
    source: str


class OperationError(Exception):
    """An operation refused or failed; the message says what was wrong and what to do."""


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """What the operations need from the settings."""

    mode: Mode
    origin: str
    allowed_dirs: Sequence[Path]
    state_dir: Path
    default_workspace_id: str | None = None
    default_wait: float = 50.0
    """PROLIFIC_MCP_WAIT_SECONDS: the wait when a call gives none, and the one a next call suggests."""
    max_wait: float = 900.0


@dataclass(eq=False)
class Deps:
    """The dependencies of every operation, against one API origin."""

    client: ProlificClient
    ledger: Ledger
    jobs: UploadManager
    options: ServiceOptions
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    migrations: dict[str, str] = field(default_factory=dict)
    """The latest schema migration this server started, by dataset id: get_dataset shows its status."""
    _account: str | None = None
    _account_lock: anyio.Lock = field(default_factory=anyio.Lock)
    _noted: dict[str, _Noted] = field(default_factory=dict)

    @property
    def mode(self) -> Mode:
        return self.options.mode

    def clamp_wait(self, wait_seconds: float | None) -> float:
        """The seconds a call may wait: the default when none is given, never below 0 or above the maximum."""
        if wait_seconds is None:
            return min(self.options.default_wait, self.options.max_wait)
        return max(0.0, min(float(wait_seconds), self.options.max_wait))

    async def account_id(self) -> str:
        """The token's user id (from users/me, once per process): part of every ledger key."""
        async with self._account_lock:
            if self._account is None:
                self._account = (await self.client.get_me()).id
            return self._account

    async def remember(self, dataset: Dataset, source: Literal["created", "touched"]) -> None:
        """Note in the ledger that this server created or used the dataset (list_datasets shows it). A use that
        changes nothing the ledger holds but the time, within REMEMBER_SECONDS of the last write, stays in memory."""
        now = self.ledger.now()
        noted = self._noted.get(dataset.id)
        if (
            noted is not None
            and now - noted.written < REMEMBER_SECONDS
            and (noted.name, noted.workspace_id) == (dataset.name, dataset.workspace_id)
            and SOURCE_RANK[source] <= SOURCE_RANK[noted.source]
        ):
            noted.seen = max(noted.seen, now)
            return
        account = await self.account_id()
        await anyio.to_thread.run_sync(
            lambda: self.ledger.remember_dataset(
                self.options.origin,
                account,
                dataset.id,
                source=source,
                name=dataset.name,
                workspace_id=dataset.workspace_id,
            )
        )
        if len(self._noted) >= REMEMBERED_MAX:
            self._noted.clear()
        best = source if noted is None or SOURCE_RANK[source] > SOURCE_RANK[noted.source] else noted.source
        self._noted[dataset.id] = _Noted(now, now, dataset.name, dataset.workspace_id, best)

    async def known_datasets(self, workspace_id: str | None = None) -> list[KnownDataset]:
        """The datasets the ledger knows for this account, the last used first (this process's uses to the moment,
        other processes' to the minute: see REMEMBER_SECONDS)."""
        account = await self.account_id()
        known = await anyio.to_thread.run_sync(
            lambda: self.ledger.known_datasets(self.options.origin, account, workspace_id)
        )

        def last_used(dataset: KnownDataset) -> float:
            noted = self._noted.get(dataset.dataset_id)
            return dataset.last_seen if noted is None else max(dataset.last_seen, noted.seen)

        return sorted(known, key=last_used, reverse=True)

    async def poll(
        self,
        fetch: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        *,
        wait: float,
        planner: PollPlanner,
        on_each: Callable[[T], Awaitable[None]],
        observe: Callable[[T], tuple[str, int | None, float | None]] | None = None,
    ) -> T:
        """`poll_until` on this server's clock for at most `wait` seconds: the last value fetched. `observe` gives
        the planner each value's (status, processed count, the server's processing seconds), so the schedule
        follows the job's pace."""

        async def fetch_observed() -> T:
            value = await fetch()
            if observe is not None:
                planner.observe(self.clock(), *observe(value))
            return value

        deadline = self.clock() + wait
        return await poll_until(
            fetch_observed,
            done,
            deadline=deadline,
            planner=planner,
            on_each=on_each,
            clock=self.clock,
            sleep=self.sleep,
        )

    def resolve(self, path: str) -> Path:
        """A path inside the allowed directories, or OperationError saying why not."""
        try:
            return resolve_path(path, list(self.options.allowed_dirs))
        except FileAccessError as exc:
            raise OperationError(str(exc)) from None

    def open(self, path: str | Path) -> OpenedFile:
        """The file opened safely (a regular file inside the allowed directories), or OperationError."""
        try:
            resolved = path if isinstance(path, Path) else resolve_path(path, list(self.options.allowed_dirs))
            return open_regular_file(resolved)
        except FileAccessError as exc:
            raise OperationError(str(exc)) from None


def ended(job: ImportJob | MigrationJob) -> bool:
    """Whether an import or a migration has reached a terminal status (a wait on it is over)."""
    return job.is_terminal


def checked_id(value: object, kind: str) -> str:
    """An id that can be sent as it is, or OperationError saying what is wrong with it."""
    try:
        return check_id(value, kind)
    except InvalidIdError as exc:
        raise OperationError(str(exc)) from None


def file_format(name: str, fmt: str | None) -> FileFormat:
    """The format asked for ('jsonl', 'ndjson' or 'csv'), or the one the name's extension says."""
    if fmt:
        chosen = fmt.strip().lower().lstrip(".")
        if chosen == "ndjson":
            chosen = "jsonl"
        if chosen == "jsonl":
            return "jsonl"
        if chosen == "csv":
            return "csv"
        raise OperationError(f"format {fmt!r} is not supported: use 'jsonl' or 'csv'")
    detected = format_from_filename(name)
    if detected is None:
        raise OperationError(
            f"{os.path.basename(name)!r} is not a .jsonl, .ndjson or .csv file: convert it, or pass "
            "format='jsonl' or format='csv' if the content already is one"
        )
    return detected


FIELDS_EXAMPLE: Final = '[{"key": "review", "type": "text", "label": "Review"}, {"key": "id", "type": "metadata"}]'


def parse_fields(fields: object, strict: object) -> Schema:
    """Validate `fields` (a list of {key, type, label}, or that as a JSON string) and `strict` into a Schema."""
    if isinstance(fields, str):
        try:
            fields = json.loads(fields)
        except ValueError:
            raise OperationError(f"fields is not valid JSON: pass a list such as {FIELDS_EXAMPLE}") from None
    if fields is None:
        fields = []
    if isinstance(strict, str):
        strict = {"true": True, "false": False}.get(strict.strip().lower(), strict)
    raw = {"strict": strict, "fields": fields_by_key(fields)}
    problems = schema_problems(raw)
    if problems:
        listed = "; ".join((f"{p.field}: " if p.field else "") + p.message for p in problems[:10])
        raise OperationError(f"the schema is not valid: {listed}. Fix these and call again (suggest_schema helps).")
    return Schema.from_dict(raw)


def fields_by_key(fields: object) -> dict[str, dict[str, object]]:
    """A list of {key, type, label} as the API's {key: {type, label}}, or OperationError naming what is wrong."""
    if isinstance(fields, Mapping):
        listed = json.dumps(field_list(fields) if all(isinstance(v, Mapping) for v in fields.values()) else [])
        raise OperationError(
            f"fields is a list of {{key, type, label}} objects, not an object keyed by field: pass fields={listed}"
            if listed != "[]"
            else f"fields is a list of {{key, type, label}} objects, e.g. {FIELDS_EXAMPLE}"
        )
    if not isinstance(fields, list):
        raise OperationError(f"fields is a list of {{key, type, label}} objects, e.g. {FIELDS_EXAMPLE}")
    out: dict[str, dict[str, object]] = {}
    for n, item in enumerate(fields, 1):
        if not isinstance(item, Mapping):
            raise OperationError(
                f"fields item {n} is {json.dumps(item)[:60]}, not an object: each field is "
                f'{{"key": ..., "type": ..., "label": ...}}, e.g. {FIELDS_EXAMPLE}'
            )
        key, ftype, label = item.get("key"), item.get("type"), item.get("label")
        if not isinstance(key, str) or not key:
            raise OperationError(f'fields item {n} has no "key": give each field the key its records use')
        if key in out:
            raise OperationError(f"fields has the key {key!r} twice: give each field once")
        spec: dict[str, object] = {"type": ftype}  # its type and label are checked by schema_problems
        if label not in (None, ""):
            spec["label"] = label
        out[key] = spec
    return out


def api_schema(schema: Schema) -> DatasetSchema:
    return DatasetSchema.model_validate(schema.to_dict())


def local_schema(dataset: Dataset) -> Schema | None:
    """The dataset's schema as the local checks know it (fields of types this version does not know are left out)."""
    if dataset.dataset_schema is None:
        return None
    raw = dataset.dataset_schema.to_api()
    if schema_problems(raw):
        known = {k: v for k, v in raw["fields"].items() if not schema_problems({"strict": True, "fields": {k: v}})}
        raw = {"strict": raw["strict"], "fields": known}
    return Schema.from_dict(raw)
