"""The server-owned upload task (docs/architecture.md, Concurrency and The ledger): the upload queue, the PUT, the
import watch, cancellation.

An `UploadJob` runs in the manager's task group, not in the tool call that started it, so it outlives the call:
a call waits on the job for its `wait_seconds`, then hands off with the next call to make, while the job goes on
(PUT, then the import watched to a terminal status). Cancelling a call aborts the job only while its PUT is
still in flight; after that the import goes on at Prolific and only the waiting stops.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import anyio
import anyio.abc

from prolific_mcp.api.client import ProlificClient
from prolific_mcp.api.errors import (
    AmbiguousUploadUrlError,
    FileChangedError,
    ProlificError,
    UploadError,
    UploadUrlExpiredError,
)
from prolific_mcp.api.models import ImportJob, V3Baseline
from prolific_mcp.api.s3 import DEFAULT_CHUNK_SIZE
from prolific_mcp.records import FileFormat
from prolific_mcp.redaction import redact
from prolific_mcp.uploads.files import OpenedFile
from prolific_mcp.uploads.groups import RejectionGroup
from prolific_mcp.uploads.ledger import ClaimLost, Ledger, UploadKey, UploadRow
from prolific_mcp.uploads.polling import FIRST_DELAY, PollPlanner, poll_until
from prolific_mcp.uploads.rejections import explain

log = logging.getLogger("prolific_mcp.uploads")

QUEUE_LIMIT: Final = 100
LARGE_FILE: Final = 64 * 1024 * 1024
LARGE_CHUNK: Final = 4 * 1024 * 1024
"""The PUT's chunk for files of LARGE_FILE or more (1 MiB below): a quarter of the reads, hashes and thread hops
per byte, for 3 MiB more of memory per upload in flight."""
HEARTBEAT: Final = 10.0
Phase = Literal["waiting_for_slot", "requesting_url", "uploading", "watching", "done"]


class UploadBusyError(Exception):
    """The upload queue is full."""


class PreflightRefused(Exception):
    """The pre-flight, run beside the PUT, found the file certain to fail: the PUT stopped before its last chunk,
    so the import received nothing. The message is the refusal, for the agent."""


class PreflightGate(Protocol):
    """The pre-flight of a file whose PUT starts before its scan ends (docs/architecture.md, Files and pre-flight)."""

    async def ready(self) -> None:
        """Awaited before the upload URL is asked for: until the scan is under way (a scan still waiting its turn
        would leave the PUT's connection idle)."""

    async def pace(self, end: int, last: bool) -> None:
        """Awaited before each chunk of the PUT (on every attempt): holds the PUT back while it is too far ahead of
        a scan that has not cleared the file yet, and before the last chunk waits until the scan has cleared the
        file or ended, raising PreflightRefused if the file must not be imported."""

    async def settle(self) -> None:
        """Awaited beside the watch once the whole file was sent, before the outcome: the scan's report completes
        the plan (`record_count`, `key_warning`). Never raises."""

    async def stop(self) -> None:
        """End the scan if it still runs, and wait until it no longer reads the file."""


@dataclass(slots=True)
class UploadPlan:
    """Everything a job needs, decided by the caller before any network call."""

    key: UploadKey
    dataset_id: str
    filename: str
    fmt: FileFormat
    size: int
    record_count: int | None
    opened: OpenedFile | None
    """The open file to PUT (None when only watching an import that was already uploaded)."""
    local_path: Path | None
    v3: bool = False
    v3_before: V3Baseline | None = None
    """A V3 dataset's state before this upload (its previous READY or ERROR is not this file's outcome)."""
    write_rejected: bool = True
    allowed_dirs: Sequence[Path] = ()
    """Where the rejected-records file may be written (beside `local_path`, checked again when writing)."""
    key_warning: str | None = None
    """The pre-flight's warning that the file's keys and the schema's differ: every answer about this upload
    repeats it (a hand-off, get_import_status on the live job, the outcome)."""
    gate: PreflightGate | None = None
    """Set when the pre-flight runs beside the PUT: it paces the PUT, and its verdict comes before the last chunk."""


@dataclass(eq=False)
class UploadJob:
    """One upload in progress, owned by the manager; its fields are read by the calls that wait on it."""

    plan: UploadPlan
    phase: Phase = "waiting_for_slot"
    slots_ahead: int = 0
    bytes_sent: int = 0
    import_id: str | None = None
    ledger_row: UploadRow | None = None
    latest: ImportJob | None = None
    v3_status: str | None = None
    error: BaseException | None = None
    cancelled: bool = False
    watch_gave_up: bool = False
    orphans: list[str] = field(default_factory=list)
    rejected_file: str | None = None
    rejected_written: int | None = None
    groups: list[RejectionGroup] | None = None
    """The outcome's rejections grouped by cause, with excerpts from the file when it is unchanged."""
    suggested_schema: dict[str, object] | None = None
    """For pending_schema: fields suggested from the file."""
    write_problem: str | None = None
    """Why the rejected-records file could not be written, when it could not."""
    put_attempts: int = 0
    put_failed: bool = False
    """The upload ended with an error before the file was fully received: its import never got the file."""
    file_received: bool = False
    """The import has the file (the PUT succeeded, or it was found to have it): from here on every answer names the
    import and the call that follows it, whatever happens while watching."""
    unchecked: bool = False
    """The upload ended with an error and whether its import received the file could not be checked."""
    done: anyio.Event = field(default_factory=anyio.Event)
    _changed: anyio.Event = field(default_factory=anyio.Event)
    _scope: anyio.CancelScope | None = None
    _slot: anyio.Event | None = None
    """Set when the queue hands this job an upload slot (None: it got one when it was queued)."""

    # ----- observing -----

    def changed(self) -> anyio.Event:
        """An event set at the job's next change (take it, then wait on it)."""
        return self._changed

    def _touch(self) -> None:
        old, self._changed = self._changed, anyio.Event()
        old.set()

    @property
    def terminal_status(self) -> str | None:
        if self.latest is not None and self.latest.is_terminal:
            return self.latest.status
        if self.v3_status in ("READY", "ERROR"):
            return self.v3_status
        return None

    @property
    def queued_for_slot(self) -> bool:
        """True while the job waits in the queue for an upload slot (all slots busy)."""
        return self._slot is not None and not self._slot.is_set()

    @property
    def in_put(self) -> bool:
        """True until the file has been fully received: cancelling now aborts the upload."""
        return self.phase in ("waiting_for_slot", "requesting_url", "uploading")

    def cancel(self) -> None:
        """Abort the job if its PUT is still in flight (the user changed their mind)."""
        if self.in_put and self._scope is not None:
            self.cancelled = True
            self._scope.cancel()


ProgressCallback = Callable[[float, str], Awaitable[None]]
Describe = Callable[[UploadJob], tuple[float, str]]
"""A job's progress as (value 0–100, a message a person can read)."""


async def follow(job: UploadJob, seconds: float, report: ProgressCallback | None, describe: Describe) -> bool:
    """Wait up to `seconds` for the job to finish, reporting progress (as `describe` words it); True when it
    finished.

    Values strictly increase (a heartbeat at least every 10 s nudges the value by a small step), and a cancelled
    call aborts the job only while its PUT is in flight.
    """
    last = -1.0
    deadline = anyio.current_time() + max(0.0, seconds)
    try:
        while True:
            changed = job.changed()
            value, message = describe(job)
            if report is not None:
                if value <= last:
                    ceiling = 49.99 if value < 50 else 99.99
                    value = min(last + 0.01, ceiling) if last < ceiling else last
                if value > last:
                    await report(value, message)
                    last = value
            if job.done.is_set():
                return True
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return False
            with anyio.move_on_after(min(HEARTBEAT, remaining)):
                await changed.wait()
    except anyio.get_cancelled_exc_class():
        if job.in_put:
            job.cancel()
        elif job.import_id and not job.done.is_set():
            log.info(
                "the call waiting for import %s of dataset %s ended early; the import goes on: follow it with "
                "get_import_status",
                job.import_id,
                job.plan.dataset_id,
            )
        raise


@dataclass(eq=False)
class UploadManager:
    """Runs upload jobs in its own task group with at most `max_uploads` PUTs at once (FIFO for the rest)."""

    client: ProlificClient
    ledger: Ledger
    _: KW_ONLY
    max_uploads: int = 4
    queue_limit: int = QUEUE_LIMIT
    watch_seconds: float = 900.0
    """How long the background watch follows an import before it hands off for good."""
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    _tg: anyio.abc.TaskGroup | None = field(default=None, init=False)
    _active: int = field(default=0, init=False)
    _waiting: deque[tuple[UploadJob, anyio.Event]] = field(default_factory=deque, init=False)
    _jobs: dict[tuple[str, str], UploadJob] = field(default_factory=dict, init=False)
    _by_key: dict[UploadKey, UploadJob] = field(default_factory=dict, init=False)

    async def __aenter__(self) -> UploadManager:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(*exc)

    # ----- lookup -----

    def job_for_key(self, key: UploadKey) -> UploadJob | None:
        job = self._by_key.get(key)
        return job if job is not None and not job.done.is_set() else None

    def job_for_import(self, dataset_id: str, import_id: str) -> UploadJob | None:
        """The job still running for this import, if this process runs one."""
        job = self._jobs.get((dataset_id, import_id))
        return job if job is not None and not job.done.is_set() else None

    @property
    def queued(self) -> int:
        return len(self._waiting)

    # ----- starting -----

    def start_upload(self, plan: UploadPlan, row: UploadRow | None = None) -> UploadJob:
        """Start a new upload, or queue it for a slot; raises UploadBusyError when the queue is full.

        `row` is the ledger's claim for this upload (`Ledger.claim`): the job records its import on it, and
        releases it if it ends before asking for an upload URL. The slot or the place in the queue is taken here,
        before anything awaits, so that calls arriving together never overfill the queue.
        """
        if self._tg is None:
            raise RuntimeError("the upload manager is not running")
        job = UploadJob(plan, ledger_row=row)
        if self._active < self.max_uploads and not self._waiting:
            self._active += 1
        elif len(self._waiting) >= self.queue_limit:
            raise UploadBusyError(
                f"the server is busy: {len(self._waiting)} uploads are already waiting for an upload slot (the "
                f"queue holds {self.queue_limit}); try again in a minute"
            )
        else:
            job._slot = anyio.Event()
            self._waiting.append((job, job._slot))
            self._renumber()
        self._by_key[plan.key] = job
        self._spawn(self._run_upload, job)
        return job

    def watch_import(self, plan: UploadPlan, row: UploadRow) -> UploadJob:
        """Watch an import that was already uploaded (a resume through the ledger)."""
        existing = self.job_for_import(plan.dataset_id, row.import_id or "")
        if existing is not None:
            return existing
        job = UploadJob(plan, phase="watching", import_id=row.import_id, ledger_row=row, file_received=True)
        if row.import_id:
            self._jobs[(plan.dataset_id, row.import_id)] = job
        self._by_key[plan.key] = job
        self._spawn(self._run_watch, job)
        return job

    def run_soon(self, func: Callable[[], Awaitable[None]]) -> None:
        """Run `func` in the manager's task group (work that must outlive the call that starts it)."""
        if self._tg is None:
            raise RuntimeError("the upload manager is not running")

        async def run() -> None:
            await func()

        self._tg.start_soon(run)

    def _spawn(self, func: Callable[[UploadJob], Awaitable[None]], job: UploadJob) -> None:
        if self._tg is None:
            raise RuntimeError("the upload manager is not running")
        self._tg.start_soon(self._guard, func, job)

    async def _guard(self, func: Callable[[UploadJob], Awaitable[None]], job: UploadJob) -> None:
        with anyio.CancelScope() as scope:
            job._scope = scope
            try:
                await func(job)
            except Exception as exc:
                job.error = exc
                log.warning("upload of %s ended with an error: %s", job.plan.filename, redact(str(exc)))
        if scope.cancelled_caught and job.error is None and job.terminal_status is None:
            job.cancelled = True
        job.phase = "done"
        await self._finish(job)

    async def _finish(self, job: UploadJob) -> None:
        with anyio.CancelScope(shield=True):
            row = job.ledger_row
            if row is not None and row.state == "claimed":
                # Ended before an upload URL was given: nothing was created, unless asking for it was ambiguous.
                if isinstance(job.error, AmbiguousUploadUrlError):
                    job.orphans.extend(job.error.orphan_import_ids or ())
                    job.ledger_row = await anyio.to_thread.run_sync(self.ledger.set_state, row.id, "orphaned")
                else:
                    await anyio.to_thread.run_sync(self.ledger.release, row.id)
            elif row is not None and row.state in ("url_issued", "uploading"):
                if job.cancelled:
                    job.ledger_row = await anyio.to_thread.run_sync(self.ledger.set_state, row.id, "cancelled")
                    log.warning(
                        "the upload of %s to dataset %s was cancelled before the whole file was sent; import %s "
                        "stays 'uninitialised' (upload_file with the same file starts again)",
                        job.plan.filename,
                        job.plan.dataset_id,
                        row.import_id,
                    )
                elif isinstance(job.error, PreflightRefused):
                    # Stopped before the last chunk: the import received nothing and stays 'uninitialised'.
                    job.ledger_row = await anyio.to_thread.run_sync(self.ledger.set_state, row.id, "cancelled")
                elif job.error is not None:
                    # The file never fully reached the upload URL (or whether it did is unknown: `unchecked`); the
                    # row is left `orphaned`, so the next upload of the file checks its import before going on.
                    job.put_failed = not job.unchecked
                    job.ledger_row = await anyio.to_thread.run_sync(self.ledger.set_state, row.id, "orphaned")
            if job.plan.gate is not None:
                await job.plan.gate.stop()  # before the close: the scan must no longer read the descriptor
            if job.plan.opened is not None:
                job.plan.opened.close()
            job.done.set()
            job._touch()

    # ----- the slot queue -----

    async def _acquire_slot(self, job: UploadJob) -> None:
        """Wait for the slot `start_upload` queued this job for (at once if it got one then)."""
        ready = job._slot
        if ready is None:
            return
        entry = (job, ready)
        try:
            await ready.wait()
        except BaseException:
            if entry in self._waiting:
                self._waiting.remove(entry)
                self._renumber()
            elif ready.is_set():
                self._release_slot()
            raise

    def _release_slot(self) -> None:
        if self._waiting:
            _, ready = self._waiting.popleft()
            ready.set()
            self._renumber()
        else:
            self._active -= 1

    def _renumber(self) -> None:
        for position, (job, _) in enumerate(self._waiting):
            if job.slots_ahead != position:
                job.slots_ahead = position
                job._touch()

    # ----- the job bodies -----

    async def _run_upload(self, job: UploadJob) -> None:
        plan = job.plan
        assert plan.opened is not None
        job.phase = "waiting_for_slot"
        job._touch()
        await self._acquire_slot(job)
        try:
            await self._put_with_fresh_url(job)
        finally:
            self._release_slot()
        job.phase = "watching"
        job._touch()
        if plan.gate is None:
            await self._watch(job)
            return
        async with anyio.create_task_group() as tg:  # the rest of the scan, beside the watch
            tg.start_soon(plan.gate.settle)
            await self._watch(job)

    async def _request_url(self, job: UploadJob) -> Any:
        plan = job.plan
        job.phase = "requesting_url"
        job._touch()
        target = await self.client.get_upload_url(plan.dataset_id, plan.filename, expect_import_id=not plan.v3)
        job.import_id = target.import_id
        row = job.ledger_row
        if row is not None:
            try:  # the claim (or, after an expired URL, the same row) now names the import: before any byte
                job.ledger_row = await anyio.to_thread.run_sync(self.ledger.record_import, row.id, target.import_id)
            except ClaimLost:
                job.orphans.extend([target.import_id] if target.import_id else [])
                raise
        else:
            job.ledger_row = await anyio.to_thread.run_sync(
                lambda: self.ledger.record_url_issued(
                    plan.key,
                    import_id=target.import_id,
                    filename=plan.filename,
                    local_path=str(plan.local_path) if plan.local_path else None,
                    fmt=plan.fmt,
                    record_count=plan.record_count,
                )
            )
        if target.import_id:
            self._jobs[(plan.dataset_id, target.import_id)] = job
        log.info("uploading %s to dataset %s as import %s", plan.filename, plan.dataset_id, target.import_id)
        return target

    async def _put_with_fresh_url(self, job: UploadJob) -> None:
        plan = job.plan
        assert plan.opened is not None
        if plan.gate is not None:
            await plan.gate.ready()
        target = await self._request_url(job)
        for attempt in (1, 2):
            row = job.ledger_row
            assert row is not None
            job.ledger_row = await anyio.to_thread.run_sync(self.ledger.set_state, row.id, "uploading")
            job.phase = "uploading"
            job.bytes_sent = 0
            job._touch()

            async def on_progress(sent: int, total: int) -> None:
                job.bytes_sent = sent
                job._touch()

            try:
                result = await self.client.put_file(
                    target,
                    plan.opened.fd,
                    size=plan.size,
                    on_progress=on_progress,
                    expected_sha256=plan.key.sha256,
                    pace=plan.gate.pace if plan.gate is not None else None,
                    chunk_size=LARGE_CHUNK if plan.size >= LARGE_FILE else DEFAULT_CHUNK_SIZE,
                )
            except UploadUrlExpiredError:
                if attempt == 2:
                    raise
                if job.import_id:
                    job.orphans.append(job.import_id)
                target = await self._request_url(job)
                continue
            except FileChangedError:
                raise
            except UploadError:
                if not await self._file_arrived(job):
                    raise
                log.warning(
                    "the upload of %s to dataset %s ended with an error, but import %s received the file: following it",
                    plan.filename,
                    plan.dataset_id,
                    job.import_id,
                )
                job.bytes_sent = plan.size
                job.file_received = True
                job.ledger_row = await anyio.to_thread.run_sync(self.ledger.set_state, row.id, "uploaded")
                job._touch()
                return
            job.put_attempts += result.attempts
            job.bytes_sent = plan.size
            job.file_received = True
            job.ledger_row = await anyio.to_thread.run_sync(self.ledger.set_state, row.id, "uploaded")
            job._touch()
            return

    async def _file_arrived(self, job: UploadJob) -> bool:
        """After a failed PUT: whether its import received the file all the same (the store kept it, then the
        answer was lost). Unknown (`job.unchecked`) when the import cannot be read; never assumed empty."""
        if job.plan.v3 or not job.import_id:
            return False
        try:
            current = await self.client.get_import(job.plan.dataset_id, job.import_id)
        except ProlificError:
            job.unchecked = True
            return False
        return current.status != "uninitialised"

    async def _run_watch(self, job: UploadJob) -> None:
        await self._watch(job)

    async def _watch(self, job: UploadJob) -> None:
        """Poll the import (or the V3 dataset status) on the polling schedule until a terminal status."""
        plan = job.plan
        # A scan beside the PUT may still be counting the records (`settle`): its count is taken once known.
        planner = PollPlanner(
            total_records=plan.record_count,
            started_at=self.clock(),
            first_delay=FIRST_DELAY if plan.gate is not None else None,
        )

        # A V3 status read right after the PUT may be the previous file's: not this upload's outcome until the status
        # has moved on or the dataset shows the new file (docs/prolific-api.md, What Prolific's CLI and OpenAPI add).
        moved = plan.v3_before is None or not plan.v3_before.may_linger

        async def fetch() -> bool:
            nonlocal moved
            if plan.v3:
                status = await self.client.get_dataset_status(plan.dataset_id)
                planner.observe(self.clock(), (status.status or "").lower(), None)
                if not status.is_terminal:
                    moved = True
                elif not moved and plan.v3_before is not None:
                    moved = plan.v3_before.changed(await self.client.get_dataset(plan.dataset_id))
                if not moved:
                    return False
                job.v3_status = status.status
                return status.is_terminal
            assert job.import_id is not None
            job.latest = await self.client.get_import(plan.dataset_id, job.import_id)
            planner.total_records = planner.total_records or plan.record_count
            latest = job.latest
            planner.observe(self.clock(), latest.status, latest.processed_offset, latest.processing_seconds)
            return latest.is_terminal

        async def touch(_: bool) -> None:
            job._touch()

        deadline = self.clock() + self.watch_seconds
        finished = await poll_until(
            fetch, bool, deadline=deadline, planner=planner, on_each=touch, clock=self.clock, sleep=self.sleep
        )
        if finished:
            await self._record_outcome(job)
        else:
            job.watch_gave_up = True
            job._touch()

    async def _record_outcome(self, job: UploadJob) -> None:
        row = job.ledger_row
        if row is None:
            return
        if job.plan.v3:
            state = "complete" if job.v3_status == "READY" else "failed"
            outcome: dict[str, Any] = {"status": job.v3_status}
        else:
            assert job.latest is not None
            state = job.latest.status
            outcome = job.latest.model_dump(mode="json", by_alias=True)
        job.ledger_row = await anyio.to_thread.run_sync(
            lambda: self.ledger.set_state(row.id, state, outcome)  # type: ignore[arg-type]
        )
        if job.latest is not None:
            plan = job.plan
            explained = await explain(
                job.latest,
                plan.opened,
                plan.fmt,
                ledger=self.ledger,
                row=job.ledger_row,
                original=plan.local_path,
                allowed=plan.allowed_dirs,
                write_file=plan.write_rejected,
            )
            job.groups, job.suggested_schema = explained.groups, explained.suggested_schema
            job.write_problem = explained.write_problem
            if explained.rejected_file is not None:
                job.rejected_file, job.rejected_written = explained.rejected_file, explained.rejected_written
