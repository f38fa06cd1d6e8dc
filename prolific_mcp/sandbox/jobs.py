"""The per-dataset work queue: imports and migrations run one at a time per dataset, in arrival order.

Each dataset with work gets one drain task on the event loop. It takes the dataset's next job (arrival = PUT
completion for an upload, PATCH time for a migration), keeps an import `queued` for at least the pace's `queued`
seconds and then until one of the config's `workers` is free, runs the record work in a worker thread, and writes
the terminal status no earlier than the pace's `processing` seconds after processing began. Datasets are
independent of each other but for the shared workers. With `store_only` no import runs: a dataset's queue stops at
its first import.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import anyio
import anyio.abc

from prolific_mcp.sandbox.config import SandboxConfig
from prolific_mcp.sandbox.importer import PENDING_SCHEMA_REASON, WorkResult, process_upload, run_migration
from prolific_mcp.sandbox.store import Db, Store
from prolific_mcp.sandbox.traffic import ApiTraffic

log = logging.getLogger("prolific_mcp.sandbox.jobs")


class Scheduler:
    """Runs the work of every dataset; `kick(dataset_pk)` after queueing something."""

    def __init__(self, store: Store, config: SandboxConfig, traffic: ApiTraffic | None = None) -> None:
        self.store = store
        self.config = config
        self.traffic = traffic or ApiTraffic()
        """The API's requests in flight: the workers step aside while any is (traffic.py)."""
        self.stop_flag = threading.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._running: set[int] = set()
        self._wake: dict[int, int] = {}
        self._queued_since: dict[str, float] = {}
        self.workers = anyio.CapacityLimiter(config.workers)
        """Imports and migrations processed at once, across datasets (SandboxConfig.workers)."""
        self.held_back = 0
        """How many times a store-only sandbox reached a stored import and left it unprocessed (observable by tests
        through /_sandbox/info, so they wait for the decision instead of sleeping)."""

    def attach(self, tg: anyio.abc.TaskGroup) -> None:
        """Start scheduling into `tg` (the server's task group)."""
        self._tg = tg

    def lock(self, dataset_pk: int) -> asyncio.Lock:
        """The dataset's lock: held by its running job, or by an append."""
        found = self._locks.get(dataset_pk)
        if found is None:
            found = self._locks[dataset_pk] = asyncio.Lock()
        return found

    def note_queued(self, upload_id: str) -> None:
        """Remember when an upload became `queued` (for the pace); call on the event loop."""
        self._queued_since[upload_id] = time.monotonic()

    def kick(self, dataset_pk: int) -> None:
        """Make sure the dataset's queue is drained; call on the event loop."""
        self._wake[dataset_pk] = self._wake.get(dataset_pk, 0) + 1
        if dataset_pk in self._running or self._tg is None or self.stop_flag.is_set():
            return
        self._running.add(dataset_pk)
        self._tg.start_soon(self._drain, dataset_pk)

    def stop(self) -> None:
        """Ask workers to stop at their next commit; interrupted work resumes on the next start."""
        self.stop_flag.set()

    async def _drain(self, dataset_pk: int) -> None:
        try:
            while not self.stop_flag.is_set():
                wake = self._wake.get(dataset_pk, 0)
                async with self.lock(dataset_pk):
                    job = await self.store.run(Db.next_job, dataset_pk)
                    if job is None:
                        if self._wake.get(dataset_pk, 0) == wake:
                            return
                        continue
                    if job.kind == "upload":
                        if self.config.store_only:
                            # Store-only: the dataset's queue stops at its first import, as at a Prolific that
                            # never picks it up (the object is kept; nothing is processed).
                            self.held_back += 1
                            return
                        await self._run_upload(job.pk)
                    else:
                        await self._run_migration(job.pk)
        finally:
            self._running.discard(dataset_pk)

    async def _run_upload(self, pk: int) -> None:
        pace = self.config.pace
        up = await self.store.run(Db.upload_by_pk, pk)
        if up.status == "queued":
            since = self._queued_since.pop(up.id, None)
            wait = pace.queued - (time.monotonic() - since) if since is not None else pace.queued
            if wait > 0:
                await anyio.sleep(wait)
            dataset = await self.store.run(Db.dataset_by_pk, up.dataset_pk)
            if up.kind == "import" and not dataset.has_schema:
                await self.store.run(Db.park_upload, pk, PENDING_SCHEMA_REASON)
                return
        async with self.workers:  # `queued` until a worker is free (an interrupted import resumes `processing`)
            if up.status == "queued":
                await self.store.run(Db.start_upload, pk)
            started = time.monotonic()
            result = await self._in_thread(
                f"import {up.id}",
                process_upload,
                self.store,
                pk,
                self.config.rules,
                pace,
                self.config.chunk_records,
                self.stop_flag,
                self.traffic,
            )
            if result.interrupted:
                return
            await self._pace_processing(started)
            done = await self.store.run(Db.finish_upload, pk, result.failure)
        log.info("import %s on dataset %s: %s", done.id, up.dataset_pk, done.status)

    async def _run_migration(self, pk: int) -> None:
        async with self.workers:
            await self.store.run(Db.start_migration, pk)
            started = time.monotonic()
            result = await self._in_thread(
                f"migration {pk}", run_migration, self.store, pk, self.config.rules, self.stop_flag, self.traffic
            )
            if result.interrupted:
                return
            await self._pace_processing(started)
            await self.store.run(Db.finish_migration, pk, result.failure)

    async def _pace_processing(self, started: float) -> None:
        wait = self.config.pace.processing - (time.monotonic() - started)
        if wait > 0:
            await anyio.sleep(wait)

    async def _in_thread(self, what: str, fn: Any, *args: Any) -> WorkResult:
        """Run record work in a worker thread; a crash becomes a `failed` job with a reason, never a hang."""
        try:
            result: WorkResult = await anyio.to_thread.run_sync(fn, *args)
        except Exception as exc:
            log.exception("%s crashed", what)
            return WorkResult(failure=f"internal error in the sandbox while processing: {type(exc).__name__}: {exc}")
        if self.stop_flag.is_set() and not result.interrupted and result.failure is None:
            # Finished just as the sandbox stops: the terminal status is written on the next start.
            return WorkResult(interrupted=True)
        return result
