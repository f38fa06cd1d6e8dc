"""upload_file (with the ledger's resume rules and the stored outcome of an identical upload) and
get_import_status (docs/architecture.md, The path of one upload_file call, and The ledger)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio

from prolific_mcp.api.errors import NotFoundError, ProlificError
from prolific_mcp.api.models import Dataset, ImportJob, V3Baseline
from prolific_mcp.operations import render
from prolific_mcp.operations.checks import checked_preflight
from prolific_mcp.operations.deps import Deps, OperationError, Progress, checked_id, ended, file_format, local_schema
from prolific_mcp.operations.early_put import early_put_eligible, start_early
from prolific_mcp.operations.results import ImportResult, PreflightInfo, field_list
from prolific_mcp.records import FileFormat, RecordRules
from prolific_mcp.text import one_line
from prolific_mcp.uploads import files
from prolific_mcp.uploads.files import FileAccessError, OpenedFile, open_regular_file, resolve_path, upload_filename
from prolific_mcp.uploads.jobs import PreflightRefused, UploadBusyError, UploadJob, UploadPlan, follow
from prolific_mcp.uploads.ledger import IN_FLIGHT_STATES, Claim, LedgerError, UploadKey, UploadRow
from prolific_mcp.uploads.polling import PollPlanner
from prolific_mcp.uploads.rejections import Explained, explain
from prolific_mcp.uploads.scan import ScanReport, file_sha256, scan_file

ATTACH_POLL_SECONDS: Final = 0.2
"""How often a call attached to another call's or process's upload looks at the ledger row again."""
ATTACH_MIN_SECONDS: Final = 5.0
"""A call attaches this long at least (even with wait_seconds=0): the owner is about to start its job."""
MAX_CLAIMS: Final = 5


def open_inline(deps: Deps, content: str, filename: str) -> OpenedFile:
    """Small inline data, staged privately in the state directory and opened like any other file."""
    try:
        return files.open_inline(content, filename, deps.options.state_dir / "inline")
    except FileAccessError as exc:
        raise OperationError(str(exc)) from None


def _source(deps: Deps, path: str | None, content: str | None, filename: str | None) -> tuple[str, Path | None]:
    """(the name shown, the resolved path or None for inline content), or OperationError for bad arguments."""
    if (path is None) == (content is None):
        raise OperationError(
            "pass either path (a file inside the allowed directories) or content with filename (≤ 1 MiB), "
            "not both and not neither"
        )
    if content is not None and not filename:
        raise OperationError("content needs a filename (e.g. 'records.jsonl') so the format is known")
    resolved = deps.resolve(path) if path is not None else None
    return os.path.basename(path if path is not None else str(filename)), resolved


async def upload_file(
    deps: Deps,
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
    dataset_id = checked_id(dataset_id, "dataset_id")
    display, resolved = _source(deps, path, content, filename)
    wait = deps.clamp_wait(wait_seconds)
    opened = deps.open(resolved) if resolved is not None else open_inline(deps, str(content), str(filename))
    handed_to_job = False
    try:
        chosen = file_format(display, fmt)  # after the open: a directory is named as such, not as a format
        dataset = await deps.client.get_dataset(dataset_id)
        report = None
        if early_put_eligible(dataset, opened, inline=resolved is None):
            early = await start_early(deps, dataset, opened, display, chosen, path=path or display)
            if isinstance(early, ScanReport):
                report = early
            else:
                try:
                    job, _, orphans = await _own(deps, early.plan, early.claim)
                except BaseException:
                    await early.gate.stop()
                    raise
                assert job is not None
                handed_to_job = True
                return await _followed(deps, job, wait, progress, lambda: early.gate.preflight, orphans)
        plan, preflight = await _plan(
            deps, dataset, opened, display, chosen, inline=resolved is None, path=path or display, report=report
        )
        job, stored, orphans = await job_for(deps, plan, force, dataset, wait)
        if job is None:
            assert stored is not None
            return await stored_outcome(deps, stored, plan, preflight)
        handed_to_job = job.plan is plan
        return await _followed(deps, job, wait, progress, lambda: preflight, orphans)
    except UploadBusyError as exc:
        raise OperationError(str(exc)) from None
    finally:
        if not handed_to_job:
            opened.close()


async def _followed(
    deps: Deps,
    job: UploadJob,
    wait: float,
    progress: Progress | None,
    preflight: Callable[[], PreflightInfo | None],
    orphans: list[str],
) -> ImportResult:
    """Follow a job for the call's wait, then its result (`preflight`: what the pre-flight found, read at the end,
    since a pre-flight beside the PUT ends during the wait)."""
    finished = await follow(job, wait, progress, render.progress)
    result = await job_result(deps, job, finished, preflight())
    result.orphaned_imports = sorted(set(result.orphaned_imports) | set(orphans))
    return result.with_text(render.with_orphans(result.text, result.orphaned_imports))


async def _plan(
    deps: Deps,
    dataset: Dataset,
    opened: OpenedFile,
    display: str,
    fmt: FileFormat,
    *,
    inline: bool,
    path: str,
    report: ScanReport | None = None,
) -> tuple[UploadPlan, PreflightInfo]:
    """Check the file against the dataset (pre-flight) and decide everything the upload needs (`report`: the scan,
    when it was run already)."""
    v3 = not dataset.is_v4
    if v3 and fmt != "csv":
        raise OperationError(
            f"dataset {dataset.id} is a legacy V3 dataset, which takes CSV files only: convert the file to "
            "CSV, or create a V4 dataset (create_dataset) for JSONL"
        )
    schema = None if v3 else local_schema(dataset)
    if report is None:  # (a report given comes from start_early, which noted the dataset already)
        await deps.remember(dataset, "touched")
        report = await anyio.to_thread.run_sync(
            lambda: scan_file(opened.fd, fmt, schema, rules=RecordRules(), expected_size=opened.size)
        )
    preflight, keys = checked_preflight(report, dataset, display, path, "Nothing was uploaded.")
    key = UploadKey(deps.options.origin, await deps.account_id(), dataset.id, report.sha256, report.size)
    plan = UploadPlan(
        key=key,
        dataset_id=dataset.id,
        filename=upload_filename(display, fmt),
        fmt=fmt,
        size=report.size,
        record_count=report.record_count,
        opened=opened,
        local_path=None if inline else opened.path,
        v3=v3,
        v3_before=V3Baseline.of(dataset) if v3 else None,
        allowed_dirs=deps.options.allowed_dirs,
        key_warning=keys.warning,
    )
    return plan, preflight


Decision = tuple[UploadJob | None, UploadRow | None, list[str]]
"""(a job to follow, or None and the stored row whose outcome stands; the imports left behind, checked empty)."""


async def job_for(deps: Deps, plan: UploadPlan, force: bool, dataset: Dataset, wait: float = 0.0) -> Decision:
    """The ledger's resume rules (docs/architecture.md, The ledger), decided by one atomic claim: however many
    calls and processes race, one of them uploads and the others attach to its upload."""
    live = deps.jobs.job_for_key(plan.key)
    if live is not None:
        return live, None, []
    deadline = deps.clock() + max(wait, ATTACH_MIN_SECONDS)
    for _ in range(MAX_CLAIMS):
        claim = await anyio.to_thread.run_sync(
            partial(
                deps.ledger.claim,
                plan.key,
                filename=plan.filename,
                local_path=str(plan.local_path) if plan.local_path else None,
                fmt=plan.fmt,
                record_count=plan.record_count,
                force=force,
            )
        )
        if claim.status == "owner":
            return await _own(deps, plan, claim)
        row = claim.row
        if claim.status == "uploaded":
            return deps.jobs.watch_import(plan, row), None, []
        if claim.status == "finished":
            if row.state == "pending_schema" and row.import_id:
                schema = dataset.dataset_schema
                if schema is not None and not schema.is_empty:
                    current = await deps.client.get_import(plan.dataset_id, row.import_id)
                    if current.status != "pending_schema":
                        return deps.jobs.watch_import(plan, row), None, []
            return None, row, []
        attached = await _attach(deps, plan, row, deadline)
        if attached is not None:
            return attached
    raise OperationError(
        f"the upload of {plan.filename} to dataset {plan.dataset_id} kept being started and abandoned by other "
        "calls: call upload_file again in a minute"
    )


async def _own(deps: Deps, plan: UploadPlan, claim: Claim) -> Decision:
    """This call won the claim: adopt an abandoned import that holds the file, or start the upload. The claim is
    released if anything fails before the job takes it over."""
    try:
        orphans: list[str] = []
        previous = claim.superseded
        if previous is not None and previous.import_id and not plan.v3:
            if await _received_file(deps, plan, previous.import_id):
                row = await anyio.to_thread.run_sync(deps.ledger.adopt, claim.row.id, previous.id)
                return deps.jobs.watch_import(plan, row), None, []
            orphans.append(previous.import_id)
        return deps.jobs.start_upload(plan, row=claim.row), None, orphans
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(deps.ledger.release, claim.row.id)
        raise


async def _received_file(deps: Deps, plan: UploadPlan, import_id: str) -> bool:
    """Whether an abandoned import received the file (its status is past `uninitialised`): checked before it is
    ever called empty. An import Prolific no longer has holds nothing."""
    try:
        current = await deps.client.get_import(plan.dataset_id, import_id)
    except NotFoundError:
        return False
    except ProlificError as exc:
        raise OperationError(
            f"an earlier upload of this file left import {import_id}, and whether it received the file could not "
            f"be checked ({render.error_text(exc)}): nothing was uploaded again; call upload_file again in a minute"
        ) from None
    return current.status != "uninitialised"


async def _attach(deps: Deps, plan: UploadPlan, row: UploadRow, deadline: float) -> Decision | None:
    """Follow an upload another call or process holds; None when it was given up (claim again)."""
    while True:
        job = deps.jobs.job_for_key(plan.key)
        if job is not None:
            return job, None, []
        current = await anyio.to_thread.run_sync(deps.ledger.upload, row.id)
        if current is None or current.state in ("orphaned", "cancelled"):
            return None  # released before its URL, or abandoned: the next claim decides again
        if current.state not in IN_FLIGHT_STATES:
            if current.state == "failed" and current.import_id:
                return deps.jobs.watch_import(plan, current), None, []
            return None  # uploaded or finished: the next claim follows it or returns its outcome
        if deps.clock() >= deadline:
            raise OperationError(render.uploading_elsewhere(plan.dataset_id, current.import_id))
        await deps.sleep(ATTACH_POLL_SECONDS)


@dataclass(frozen=True, slots=True)
class _Facts:
    """What a result says about the upload besides the import's own outcome."""

    dataset_id: str
    import_id: str | None
    filename: str
    record_count: int | None
    preflight: PreflightInfo | None = None
    from_ledger: bool = False
    inline: bool = False
    v3: bool = False
    path: str | None = None
    """The local file (None for inline content): the next call names it."""
    key_warning: str | None = None
    """The pre-flight's warning that the file's keys and the schema's differ, repeated in every answer."""


def _result(deps: Deps, facts: _Facts, status: str, finished: bool, value: float) -> ImportResult:
    return ImportResult(
        mode=deps.mode,
        dataset_id=facts.dataset_id,
        import_id=facts.import_id,
        filename=facts.filename,
        status=status,
        finished=finished,
        progress=round(value, 1),
        record_count=facts.record_count,
        preflight=facts.preflight,
        from_ledger=facts.from_ledger,
    )


def _unfinished(
    deps: Deps, facts: _Facts, result: ImportResult, message: str, *, uploading: bool, gave_up: bool
) -> ImportResult:
    wait = deps.clamp_wait(None)
    result.next_call = render.next_call(
        facts.dataset_id, facts.import_id, uploading=uploading, wait=wait, path=facts.path, filename=facts.filename
    )
    text = render.still_going(message, gave_up=gave_up, then=result.next_call)
    return result.with_text(f"{facts.key_warning}\n{text}" if facts.key_warning else text)


async def _finished(
    deps: Deps, facts: _Facts, result: ImportResult, latest: ImportJob, explained: Explained, rejected_file: str | None
) -> ImportResult:
    """The result of a finished (V4) import, with its summary."""
    total: int | None = None
    with contextlib.suppress(ProlificError):
        total = (await deps.client.get_dataset(facts.dataset_id)).total_datapoint_count
    result.accepted_count = latest.accepted_count
    result.rejected_count = latest.rejected_count
    result.duplicate_count = latest.duplicate_count
    result.total_datapoint_count = total
    result.reason = one_line(latest.reason, 500) if latest.reason else None
    result.groups = render.group_infos(explained.groups)
    result.rejected_file = rejected_file
    suggested = field_list(explained.suggested_schema) if explained.suggested_schema else None
    result.next_call = render.after_import(
        facts.dataset_id, latest.status, path=facts.path, rejected_file=rejected_file, suggested_fields=suggested
    )
    result.untrusted_file_excerpts = render.file_excerpts(explained.groups)
    outcome = render.ImportOutcome(
        next_call=result.next_call,
        dataset_id=facts.dataset_id,
        import_id=facts.import_id,
        filename=facts.filename,
        status=latest.status,
        accepted=latest.accepted_count or 0,
        rejected=latest.rejected_count or 0,
        duplicates=latest.duplicate_count or 0,
        record_count=facts.record_count,
        total_datapoints=total,
        reason=latest.reason,
        groups=explained.groups,
        rejected_file=rejected_file,
        rejected_written=result.rejected_written,
        suggested_schema=explained.suggested_schema,
        write_problem=explained.write_problem,
        inline=facts.inline and bool(latest.errors),
        key_warning=facts.key_warning,
    )
    return result.with_text(render.import_summary(outcome))


async def job_result(deps: Deps, job: UploadJob, finished: bool, preflight: PreflightInfo | None) -> ImportResult:
    """The result of a live job after the wait: its outcome, or where it stands and the call that goes on."""
    plan = job.plan
    watch_failed = job.error is not None and job.file_received and job.import_id is not None
    if (job.error is not None or job.cancelled) and not watch_failed:
        error = job.error
        if isinstance(error, PreflightRefused):
            raise OperationError(str(error)) from None
        if isinstance(error, LedgerError):
            raise OperationError(f"{error}: call upload_file again with the same arguments") from None
        if error is not None and job.unchecked and job.import_id:
            raise OperationError(render.upload_unchecked(error, plan.dataset_id, job.import_id, deps.clamp_wait(None)))
        if error is not None and not (job.put_failed and job.import_id):
            raise error
        raise OperationError(render.upload_ended(error, plan.filename, job.import_id, put_failed=job.put_failed))
    facts = _Facts(
        plan.dataset_id,
        job.import_id,
        plan.filename,
        plan.record_count,
        preflight,
        inline=plan.local_path is None,
        path=str(plan.local_path) if plan.local_path is not None else None,
        key_warning=plan.key_warning,
    )
    value, message = render.progress(job)
    latest = job.latest
    status = job.terminal_status or (latest.status if latest is not None else job.phase)
    if plan.v3 and status in ("READY", "ERROR"):
        status = status.lower()
    result = _result(deps, facts, status, finished and job.terminal_status is not None, value)
    result.orphaned_imports = list(job.orphans)
    result.rejected_written = job.rejected_written
    if watch_failed and job.error is not None:  # the file is up: the answer still names the import and next call
        message = f"uploaded; following import {job.import_id} stopped on an error: {render.error_text(job.error)}"
        return _unfinished(deps, facts, result, message, uploading=False, gave_up=False)
    if not result.finished:
        result.rejected_file = job.rejected_file
        return _unfinished(deps, facts, result, message, uploading=job.in_put, gave_up=job.watch_gave_up)
    if plan.v3:
        ok = job.v3_status == "READY"
        result.status = "complete" if ok else "failed"
        result.next_call = render.after_import(plan.dataset_id, result.status, path=facts.path)
        return result.with_text(render.v3_outcome(plan.dataset_id, plan.filename, plan.record_count, ok))
    assert latest is not None
    if job.groups is None:
        explained = await explain(latest, plan.opened, plan.fmt, ledger=deps.ledger)
    else:
        explained = Explained(job.groups, suggested_schema=job.suggested_schema, write_problem=job.write_problem)
    return await _finished(deps, facts, result, latest, explained, job.rejected_file)


def stored_import(row: UploadRow) -> ImportJob:
    """The import's outcome as the ledger stored it."""
    return ImportJob.model_validate({"import_id": row.import_id or "-", **(row.outcome or {}), "status": row.state})


async def stored_outcome(deps: Deps, row: UploadRow, plan: UploadPlan, preflight: PreflightInfo) -> ImportResult:
    """The outcome of an identical earlier upload, from the ledger (writing the rejected file if not yet written)."""
    latest = stored_import(row)
    write = row.state == "partial" and row.rejected_file is None and bool(latest.errors)
    explained = await explain(
        latest,
        plan.opened,
        plan.fmt,
        ledger=deps.ledger,
        row=row,
        original=plan.local_path,
        allowed=plan.allowed_dirs,
        write_file=write,
    )
    facts = _Facts(
        plan.dataset_id,
        row.import_id,
        plan.filename,
        plan.record_count,
        preflight,
        True,
        plan.local_path is None,
        path=str(plan.local_path) if plan.local_path is not None else None,
        key_warning=plan.key_warning,
    )
    result = _result(deps, facts, row.state, True, 100.0)
    result.rejected_written = explained.rejected_written
    if plan.v3:
        ok = row.state == "complete"
        text = render.v3_outcome(plan.dataset_id, plan.filename, plan.record_count, ok)
        result.next_call = render.after_import(plan.dataset_id, row.state, path=facts.path)
        result = result.with_text(text)
    else:
        result = await _finished(deps, facts, result, latest, explained, explained.rejected_file or row.rejected_file)
    parked = row.state == "pending_schema"
    return result.with_text(render.stored_outcome(result.text, plan.dataset_id, row.import_id, parked=parked))


async def get_import_status(
    deps: Deps,
    dataset_id: str,
    import_id: str,
    *,
    wait_seconds: float | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Read-only: follow an import (the live upload job if this process runs it); never writes files."""
    dataset_id = checked_id(dataset_id, "dataset_id")
    import_id = checked_id(import_id, "import_id")
    wait = deps.clamp_wait(wait_seconds)
    job = deps.jobs.job_for_import(dataset_id, import_id)
    if job is not None:
        finished = await follow(job, wait, progress, render.progress)
        return await job_result(deps, job, finished, None)
    row = await anyio.to_thread.run_sync(deps.ledger.upload_by_import, deps.options.origin, dataset_id, import_id)
    name = row.filename if row is not None else import_id
    records = row.record_count if row is not None else None
    latest = await _watch_import(deps, dataset_id, import_id, name, records, wait, progress)
    facts = _Facts(dataset_id, import_id, name, records, path=row.local_path if row is not None else None)
    value, message = render.import_progress(name, records, latest)
    result = _result(deps, facts, latest.status, latest.is_terminal, value)
    if not latest.is_terminal:
        return _unfinished(deps, facts, result, message, uploading=False, gave_up=False)
    if row is not None and not row.is_terminal:
        status: Any = latest.status
        outcome = latest.model_dump(mode="json", by_alias=True)
        await anyio.to_thread.run_sync(partial(deps.ledger.set_state, row.id, status, outcome))
    opened = None
    if latest.errors or latest.status == "pending_schema":
        opened = await anyio.to_thread.run_sync(_reopen_for_excerpts, deps, row)
    try:
        fmt: FileFormat = row.format if row is not None else "jsonl"  # type: ignore[assignment]
        explained = await explain(latest, opened, fmt, ledger=deps.ledger)
        return await _finished(deps, facts, result, latest, explained, row.rejected_file if row else None)
    finally:
        if opened is not None:
            opened.close()


async def _watch_import(
    deps: Deps,
    dataset_id: str,
    import_id: str,
    name: str,
    record_count: int | None,
    wait: float,
    progress: Progress | None,
) -> ImportJob:
    """Poll one import until it ends or the wait is over, reporting progress on every poll (the throttle in front
    of `progress` keeps what is news, and a heartbeat); its last known state."""
    planner = PollPlanner(total_records=record_count, started_at=deps.clock())

    async def report(latest: ImportJob) -> None:
        if progress is not None:
            await progress(*render.import_progress(name, record_count, latest))

    fetch = partial(deps.client.get_import, dataset_id, import_id)
    pace = lambda j: (j.status, j.processed_offset, j.processing_seconds)  # noqa: E731
    return await deps.poll(fetch, ended, wait=wait, planner=planner, on_each=report, observe=pace)


def _reopen_for_excerpts(deps: Deps, row: UploadRow | None) -> OpenedFile | None:
    """The ledger's local file, if it is still allowed and still the same content (size and sha256)."""
    if row is None or not row.local_path:
        return None
    try:
        opened = open_regular_file(resolve_path(row.local_path, list(deps.options.allowed_dirs)))
    except FileAccessError:
        return None
    if opened.size != row.key.size or file_sha256(opened.fd) != row.key.sha256:
        opened.close()
        return None
    return opened
