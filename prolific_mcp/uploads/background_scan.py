"""The pre-flight scan of a large file, run beside its PUT (docs/architecture.md, Files and pre-flight; docs/
performance.md, goal 8).

For a large file `upload_file` hashes the file, claims it, and starts the PUT while the scan (parsing every record)
goes on; the PUT holds its last chunk until the scan has cleared the file (ruled out every failure of the whole
file: usually at its first record) or ended. The scan runs in a child process, so that parsing does not share the
server's GIL with the PUT's event loop (on 2 cores, a parsing thread slows the PUT's every chunk). The child gets
the already opened descriptor (`pass_fds`: the file is never reopened by path) and the schema on its standard
input, says on its standard error how far it has read and when it has cleared the file, and writes its
`ScanReport` on its standard output. If the child cannot be started or fails, the same scan runs in a worker
thread instead.

`BackgroundScan` runs the scan in the upload manager's task group, so that it outlives the call that started it
(the call may hand off before the PUT ends). `stop()` cancels it (killing the child) and waits until nothing reads
the descriptor any more: the caller may close it then.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.abc

from prolific_mcp.records import FileFormat, Schema
from prolific_mcp.uploads.scan import ScanInput, ScanReport, scan_without_hash

log = logging.getLogger("prolific_mcp.uploads")

CHILD_SCANS: Final = 2
"""Scans in child processes at once (one per core here); the others wait their turn."""
_child_slots = anyio.CapacityLimiter(CHILD_SCANS)


class ScanChildError(RuntimeError):
    """The child process could not scan the file (it could not start, or ended without a report)."""


Progress = Callable[[int], None]
"""`progress(offset)`: the scan has read the file up to `offset` bytes."""
Cleared = Callable[[], None]
"""`cleared()`: the scan has ruled out every failure of the whole file (`scan_file`'s `on_cleared`)."""
CLEARED_LINE: Final = b"+"
"""The child's line on its standard error for `cleared()` (its progress lines are `@<bytes read>`)."""


async def _scan_in_child(
    given: ScanInput, progress: Progress | None = None, cleared: Cleared | None = None
) -> ScanReport:
    payload = pickle.dumps(given)
    command = [sys.executable, "-m", "prolific_mcp.uploads.scan_child"]
    try:
        process = await anyio.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(given.fd,)
        )
    except OSError as exc:
        raise ScanChildError(f"could not start ({exc.strerror or exc})") from None
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        await process.stdin.send(payload)
        await process.stdin.aclose()
        output, errors = bytearray(), bytearray()

        async def read_errors(stream: anyio.abc.ByteReceiveStream) -> None:
            pending = b""
            async for chunk in stream:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if line.startswith(b"@") and line[1:].isdigit():
                        if progress is not None:
                            progress(int(line[1:]))
                    elif line == CLEARED_LINE:
                        if cleared is not None:
                            cleared()
                    elif len(errors) < 4096:
                        errors.extend(line + b"\n")
            if pending and len(errors) < 4096:
                errors.extend(pending)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_errors, process.stderr)
            async for chunk in process.stdout:
                output.extend(chunk)
        code = await process.wait()
    except BaseException:
        with anyio.CancelScope(shield=True):
            process.kill()
            await process.wait()
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await process.aclose()
    if code != 0 or not output:
        last = errors.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise ScanChildError(f"exit status {code}: {last[0][:300]}")
    report = pickle.loads(bytes(output))  # noqa: S301 - our own child's answer, over a pipe only we hold
    if not isinstance(report, ScanReport):
        raise ScanChildError("its answer was not a scan report")
    return report


async def scan_beside(given: ScanInput, progress: Progress | None = None, cleared: Cleared | None = None) -> ScanReport:
    """The file's scan without its sha256: in a child process, else (it could not run) in a worker thread.
    `progress(0)` says it has its turn (at most CHILD_SCANS scans at once); `cleared()` that the file is not certain
    to fail (a scan run again in a thread may say it twice)."""
    async with _child_slots:
        if progress is not None:
            progress(0)
        try:
            return await _scan_in_child(given, progress, cleared)
        except ScanChildError as exc:
            log.warning("the pre-flight scan could not run in a child process (%s): scanning in a thread", exc)
    return await anyio.to_thread.run_sync(scan_without_hash, given, progress, cleared)


PROGRESS_POLL: Final = 0.01
"""How often a wait on the scan's progress looks at it again."""
MIN_RATE_SECONDS: Final = 0.2
"""The scan's rate is judged after it has run this long."""


class BackgroundScan:
    """One scan running in a task group; `report()` waits for it, `reached()` for its progress, `stop()` ends it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started_at: float | None = None
        self.position = 0
        """Bytes of the file the scan has read (from the start)."""
        self.started = False
        """The scan has its turn and is reading (it reported its progress once)."""
        self.cleared = False
        """The scan has ruled out every failure of the whole file (it may still be reading)."""
        self._done = anyio.Event()
        self._report: ScanReport | None = None
        self._error: BaseException | None = None
        self._scope: anyio.CancelScope | None = None
        self._stopped = False

    async def run(self, scan: Callable[[], Awaitable[ScanReport]]) -> None:
        """The task body: run `scan` once, keeping its report or its error for `report()`."""
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._stopped:
                    scope.cancel()
                try:
                    self._report = await scan()
                except Exception as exc:
                    self._error = exc
        finally:
            if self._report is None and self._error is None:
                self._error = ScanChildError("the scan was stopped before it ended")
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def advance(self, offset: int) -> None:
        """The scan's progress callback (from the child's reports, or from the worker thread)."""
        if self._started_at is None:
            self._started_at = self._clock()
        self.started = True
        self.position = max(self.position, offset)

    def clear(self) -> None:
        """The scan's `cleared` callback (from the child's report, or from the worker thread)."""
        self.cleared = True

    async def until_cleared(self) -> None:
        """Wait until the scan has cleared the file or ended (its report then has the verdict)."""
        while not self.cleared and not self._done.is_set():  # noqa: ASYNC110 (a worker thread sets `cleared`)
            await anyio.sleep(PROGRESS_POLL)

    def rate(self) -> float | None:
        """Bytes per second the scan has read so far (None until it has run for a moment)."""
        if self._started_at is None:
            return None
        elapsed = self._clock() - self._started_at
        return self.position / elapsed if elapsed >= MIN_RATE_SECONDS and self.position else None

    def behind(self, end: int, *, seconds: float, minimum: int) -> bool:
        """Whether a PUT about to send up to `end` would be too far ahead of the scan: more than the scan reads in
        `seconds` at its rate so far, and more than `minimum` bytes (or the scan has not started)."""
        if self._done.is_set():
            return False
        if not self.started:
            return True
        rate = self.rate()
        lead = max(minimum, int(rate * seconds)) if rate is not None else minimum
        return end - self.position > lead

    async def keep_within(self, end: int, *, seconds: float, minimum: int) -> None:
        """Wait while a PUT about to send up to `end` is too far ahead of the scan (see `behind`); `end` 0: until the
        scan has started. Returns at once when the scan has ended."""
        # Polled: a scan in a worker thread moves `position` from outside the event loop.
        while self.behind(end, seconds=seconds, minimum=minimum):  # noqa: ASYNC110
            await anyio.sleep(PROGRESS_POLL)

    async def report(self) -> ScanReport:
        """The scan's report once it has ended (its error raised again if it failed)."""
        await self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._report is not None
        return self._report

    async def stop(self) -> None:
        """Cancel the scan if it still runs and wait until it has ended (a worker thread ends on its own first)."""
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._done.wait()


def start_scan(
    spawn: Callable[[Callable[[], Awaitable[None]]], None],
    fd: int,
    fmt: FileFormat,
    schema: Schema | None,
    expected_size: int,
) -> BackgroundScan:
    """Start the scan of the open file `fd` with `spawn` (a task group's start_soon)."""
    scan = BackgroundScan()

    async def body() -> None:
        await scan.run(lambda: scan_beside(ScanInput(fd, fmt, schema, expected_size), scan.advance, scan.clear))

    spawn(body)
    return scan
