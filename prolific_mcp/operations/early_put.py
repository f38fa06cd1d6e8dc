"""upload_file for a large file: the PUT starts before the pre-flight scan ends (docs/architecture.md, Files and
pre-flight; docs/performance.md, goal 8).

The order keeps every guarantee of the ledger and of the pre-flight:

1. the scan starts in the background (a child process: `uploads/background_scan.py`) while the file's sha256 is
   computed (a hash-only pass costs a fraction of the scan);
2. with the sha256, the ledger is claimed as for any upload: one owner per content and dataset, before any upload
   URL is asked for;
3. the owner asks for the upload URL and PUTs the file while the scan goes on, never further ahead of it than the
   scan reads in HOLD_SECONDS until the scan has cleared the file, and the PUT holds its last chunk until then.
   Cleared means every failure of the whole file is ruled out (`uploads/scan.py`, `_Clearance`): most files are
   at their first record, and their PUT then runs at its own speed. A file not cleared before the scan ends gets
   the scan's verdict there, and one found certain to fail stops the PUT: the store never has the whole body, the
   import receives nothing and stays `uninitialised`, and the call refuses the file with the same reasons as the
   ordinary pre-flight;
4. once the file is sent, the rest of the scan (its record count, the records it expects rejected, the key
   warning) completes the plan beside the watch of the import (`settle`), before the outcome is given.

Only a first upload of a content to a dataset goes this way. When the ledger already knows the content (an
earlier, a concurrent or an abandoned upload), when another call of this process uploads it, or when the scan has
already ended, the call waits for the scan and takes the ordinary path (refusal before any URL, resume, attach,
stored outcome).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Final

import anyio

from prolific_mcp.api.models import Dataset
from prolific_mcp.operations.checks import checked_preflight
from prolific_mcp.operations.deps import Deps, OperationError, local_schema
from prolific_mcp.operations.results import PreflightInfo
from prolific_mcp.records import FileFormat
from prolific_mcp.uploads.background_scan import BackgroundScan, start_scan
from prolific_mcp.uploads.files import OpenedFile, upload_filename
from prolific_mcp.uploads.jobs import PreflightRefused, UploadPlan
from prolific_mcp.uploads.ledger import Claim, UploadKey
from prolific_mcp.uploads.scan import ScanReport, file_sha256

log = logging.getLogger("prolific_mcp.uploads")

EARLY_PUT_MIN_BYTES: Final = 64 * 1024 * 1024
"""Files from this size on start their PUT before the scan ends (below it the scan takes well under a second)."""
HOLD_SECONDS: Final = 5.0
SCAN_LEAD: Final = 32 * 1024 * 1024
"""Until the scan has cleared the file, the PUT runs ahead of it by at most what the scan reads in HOLD_SECONDS at
its rate so far, and at least SCAN_LEAD bytes: its last chunk then waits for the verdict about HOLD_SECONDS at
most (a store drops a connection that sends nothing for long: S3 after about 20 s), and a scan much slower than
the PUT holds it back all along. Within the lead the PUT goes at its own speed, so the scan (at a lower CPU
priority) does not slow it."""
NOTHING_IMPORTED: Final = (
    "Nothing was imported: the upload was stopped before its last part, so the import it opened received no file "
    "and stays 'uninitialised'."
)


def early_put_eligible(dataset: Dataset, opened: OpenedFile, *, inline: bool) -> bool:
    """Whether this upload may start its PUT before its scan ends: a large local file to a V4 dataset."""
    return dataset.is_v4 and not inline and opened.size >= EARLY_PUT_MIN_BYTES


@dataclass(eq=False)
class ScanGate:
    """The pre-flight beside the PUT (a `PreflightGate` for the upload job): the file cleared, or the scan's verdict,
    before the PUT's last chunk; the scan's findings once the file is sent."""

    deps: Deps
    scan: BackgroundScan
    sha256: str
    dataset: Dataset
    display: str
    path: str
    row_id: int
    plan: UploadPlan | None = None
    preflight: PreflightInfo | None = None
    """What the pre-flight found, once it has passed."""
    refusal: str | None = None

    async def ready(self) -> None:
        await self.scan.keep_within(0, seconds=HOLD_SECONDS, minimum=SCAN_LEAD)

    async def pace(self, end: int, last: bool) -> None:
        if last:
            await self.scan.until_cleared()
            if self.scan.done:  # ended before (or as) it cleared the file: its verdict, which may refuse it
                await self._verdict()
        elif self.preflight is None and not self.scan.cleared:
            await self.scan.keep_within(end, seconds=HOLD_SECONDS, minimum=SCAN_LEAD)

    async def settle(self) -> None:
        """After the whole file was sent: wait for the scan's report and complete the plan with it. Never raises:
        the file was cleared, so only a scan that failed, or a file changed since it was sent, leaves the outcome
        without the pre-flight's findings."""
        try:
            await self._verdict()
        except PreflightRefused as exc:
            log.warning("the pre-flight's report on %s came after its upload: %s", self.display, exc)
        except Exception as exc:
            log.warning("the pre-flight scan of %s ended without a report: %s", self.display, exc)

    async def _verdict(self) -> None:
        if self.preflight is not None:
            return
        if self.refusal is not None:
            raise PreflightRefused(self.refusal)
        report = await self.scan.report()
        report.sha256 = self.sha256
        try:
            preflight, keys = checked_preflight(report, self.dataset, self.display, self.path, NOTHING_IMPORTED)
        except OperationError as exc:
            self.refusal = str(exc)
            raise PreflightRefused(self.refusal) from None
        assert self.plan is not None
        self.plan.record_count = report.record_count
        self.plan.key_warning = keys.warning
        await anyio.to_thread.run_sync(self.deps.ledger.set_record_count, self.row_id, report.record_count)
        self.preflight = preflight

    async def stop(self) -> None:
        await self.scan.stop()


@dataclass(frozen=True, slots=True)
class EarlyStart:
    """A first upload claimed before its scan ended: start its job with `plan` on `claim` (the gate is on the plan:
    `stop()` it if the job is not started)."""

    plan: UploadPlan
    claim: Claim
    gate: ScanGate


async def start_early(
    deps: Deps, dataset: Dataset, opened: OpenedFile, display: str, fmt: FileFormat, *, path: str
) -> EarlyStart | ScanReport:
    """Claim the upload with its scan still running, or (not a first upload, or the scan ended first) return the
    scan's report for the ordinary path."""
    await deps.remember(dataset, "touched")
    scan = start_scan(deps.jobs.run_soon, opened.fd, fmt, local_schema(dataset), opened.size)
    handed = False
    try:
        sha256 = await anyio.to_thread.run_sync(file_sha256, opened.fd)
        key = UploadKey(deps.options.origin, await deps.account_id(), dataset.id, sha256, opened.size)
        filename = upload_filename(display, fmt)
        claim = await _first_claim(deps, key, scan, filename=filename, local_path=str(opened.path), fmt=fmt)
        if claim is None:
            report = await scan.report()
            report.sha256, report.size = sha256, opened.size  # (a scan that failed early stops reading)
            return report
        gate = ScanGate(deps, scan, sha256, dataset, display, path, claim.row.id)
        plan = UploadPlan(
            key=key,
            dataset_id=dataset.id,
            filename=filename,
            fmt=fmt,
            size=opened.size,
            record_count=None,
            opened=opened,
            local_path=opened.path,
            allowed_dirs=deps.options.allowed_dirs,
            gate=gate,
        )
        gate.plan = plan
        handed = True
        return EarlyStart(plan, claim, gate)
    finally:
        if not handed:
            await scan.stop()


async def _first_claim(
    deps: Deps, key: UploadKey, scan: BackgroundScan, *, filename: str, local_path: str, fmt: FileFormat
) -> Claim | None:
    """The ledger's claim for a first upload of this content to this dataset; None when the ordinary path is to
    decide (the content is known, uploaded by another call, or the scan has already ended)."""
    if scan.done or deps.jobs.job_for_key(key) is not None:
        return None
    if await anyio.to_thread.run_sync(deps.ledger.latest_upload, key) is not None:
        return None
    claim = await anyio.to_thread.run_sync(
        partial(deps.ledger.claim, key, filename=filename, local_path=local_path, fmt=fmt, record_count=None)
    )
    return claim if claim.won else None
