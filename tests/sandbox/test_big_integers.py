"""Integers beyond 64 bits stay exact in the sandbox's import: records that differ only in them are not duplicates."""

from __future__ import annotations

import httpx2

from prolific_mcp.sandbox import Sandbox

from .support import create_dataset, import_and_wait


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
