"""Appended records: the outcome of append_records, and an append still held by a running import or migration."""

from __future__ import annotations

from collections.abc import Sequence

from prolific_mcp.operations.render.calls import call, call_text
from prolific_mcp.operations.render.groups import bounded
from prolific_mcp.text import plural
from prolific_mcp.uploads.groups import RejectionGroup


def appended(
    dataset_id: str,
    accepted: int,
    rejected: int,
    duplicates: int,
    groups: Sequence[RejectionGroup],
    *,
    retried: bool,
) -> str:
    lines = [
        f"Appended to {dataset_id}: {plural(accepted, 'record')} accepted ({duplicates:,} already there), "
        f"{rejected:,} rejected."
    ]
    tail = []
    if retried:
        tail.append("(The request was sent more than once after a network error; appends are idempotent.)")
    if rejected:
        tail.append("Next: fix the rejected records and append them again (only those: the others are in).")
    if accepted - duplicates > 0:
        tail.append("New datapoints reach a running batch after a batch sync.")
    return bounded(lines, groups, tail, excerpts=False)


def append_still_blocked(dataset_id: str, import_id: str | None = None, wait: float | None = None) -> str:
    """An append that waited its whole wait behind a running import or migration: nothing was appended."""
    if import_id is not None:
        follow = call("get_import_status", dataset_id=dataset_id, import_id=import_id, wait_seconds=wait)
        if wait is None:
            follow = call("get_import_status", dataset_id=dataset_id, import_id=import_id)
        return (
            f"import {import_id} is still running on {dataset_id}, and appends wait for it: nothing was appended. "
            f"Next: {call_text(follow)} until it finishes, then call append_records again with the same records"
        )
    return (
        f"an import or schema migration is still running on {dataset_id}, and appends wait for it: nothing was "
        f'appended. Next: get_dataset(dataset_id="{dataset_id}") shows what is running; then call append_records '
        "again with the same records"
    )
