"""Integers beyond 64 bits stay exact in the sandbox's import: records that differ only in them are not duplicates."""

from __future__ import annotations

import httpx2

from prolific_mcp.sandbox import Sandbox

from .support import DATASETS, create_dataset, import_and_wait
from .test_schema_append import wait_migration


def test_records_differing_only_in_a_30_digit_id_are_all_kept(sbx: Sandbox, api: httpx2.Client) -> None:
    schema = {
        "strict": False,
        "fields": {"prompt": {"type": "text"}, "id": {"type": "metadata"}, "batch": {"type": "task_group_id"}},
    }
    ds = create_dataset(api, sbx.workspace_id, schema=schema)
    big = 123456789012345678901234567890
    lines = [f'{{"prompt": "same", "id": {big + i}, "batch": {big}}}\n'.encode() for i in range(3)]
    job = import_and_wait(api, ds["id"], "big.jsonl", b"".join(lines) + lines[0])
    assert job["status"] == "complete", job
    assert (job["accepted_count"], job["duplicate_count"], job["rejected_count"]) == (4, 1, 0)


def test_a_schema_migration_keeps_integers_beyond_64_bits_exact(sbx: Sandbox, api: httpx2.Client) -> None:
    """The migration reads the stored records back: a 30-digit id stays an integer, and records that differ only in
    it stay distinct (no float, no identity collision)."""
    schema = {"strict": False, "fields": {"prompt": {"type": "text"}, "id": {"type": "metadata"}}}
    ds = create_dataset(api, sbx.workspace_id, schema=schema)
    big = 123456789012345678901234567890
    lines = [f'{{"prompt": "same", "id": {big + i}}}\n'.encode() for i in range(3)]
    assert import_and_wait(api, ds["id"], "big.jsonl", b"".join(lines))["accepted_count"] == 3
    relabelled = {"strict": False, "fields": {**schema["fields"], "prompt": {"type": "text", "label": "Prompt"}}}
    patched = api.patch(f"{DATASETS}/{ds['id']}", json={"schema": relabelled})
    assert patched.status_code == 200, patched.text
    job = wait_migration(api, ds["id"], patched.json()["migration_job_id"])
    assert (job["status"], job["reprocessed_count"], job["failed_count"]) == ("complete", 3, 0)
    again = import_and_wait(api, ds["id"], "again.jsonl", b"".join(lines))
    assert (again["accepted_count"], again["duplicate_count"]) == (3, 3), "the migrated records kept their exact ids"
