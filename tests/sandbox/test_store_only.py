"""The store-only switch (for benchmarks of the wire): PUTs are stored, their imports never processed."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2

from prolific_mcp.sandbox import Sandbox, SandboxProcess
from prolific_mcp.sandbox.cli import build_parser

from .conftest import client
from .support import create_dataset, get_import, jsonl, record, upload


def held_back_after_the_scheduler_decided(api: httpx2.Client, admin_token: str) -> dict[str, object]:
    """The sandbox's info once its scheduler has reached the stored import and held it back (bounded wait)."""
    deadline = time.monotonic() + 15
    while True:
        info: dict[str, object] = api.get("/_sandbox/info", headers={"Authorization": f"Bearer {admin_token}"}).json()
        if info["held_back_imports"] or time.monotonic() > deadline:
            return info
        time.sleep(0.02)


def test_a_stored_put_stays_queued_and_is_never_imported(tmp_path: Path) -> None:
    body = jsonl([record(i) for i in range(50)])
    with Sandbox.start(state_dir=tmp_path / "state", pace="fast", store_only=True) as sbx, client(sbx) as api:
        ds = create_dataset(api, sbx.workspace_id)
        up = upload(api, ds["id"], "data.jsonl", body)
        assert sorted(p.read_bytes() for p in (sbx.state_dir / "objects").glob("*.bin")) == [body]
        info = held_back_after_the_scheduler_decided(api, sbx.admin_token)
        assert info["store_only"] is True and info["held_back_imports"] == 1
        job = get_import(api, ds["id"], up["import_id"])
        assert (job["status"], job.get("processed_offset") or 0) == ("queued", 0)
        sbx.restart()
        assert sbx.config.store_only
        # A restart queues what was stored again; the new scheduler reaches it and holds it back too.
        assert held_back_after_the_scheduler_decided(api, sbx.admin_token)["held_back_imports"] == 1
        assert get_import(api, ds["id"], up["import_id"])["status"] == "queued"


def test_without_the_switch_the_same_put_is_imported(tmp_path: Path) -> None:
    with Sandbox.start(state_dir=tmp_path / "state", pace="fast") as sbx, client(sbx) as api:
        ds = create_dataset(api, sbx.workspace_id)
        up = upload(api, ds["id"], "data.jsonl", jsonl([record(i) for i in range(5)]))
        deadline = time.monotonic() + 15
        while get_import(api, ds["id"], up["import_id"])["status"] != "complete":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        info = api.get("/_sandbox/info", headers={"Authorization": f"Bearer {sbx.admin_token}"}).json()
        assert info["store_only"] is False


def test_the_command_line_and_the_child_process_pass_the_switch(tmp_path: Path) -> None:
    assert build_parser().parse_args(["--store-only"]).store_only is True
    assert build_parser().parse_args([]).store_only is False
    with SandboxProcess.start(tmp_path, pace="fast", store_only=True) as proc:
        admin = httpx2.get(f"{proc.url}/_sandbox/info", headers={"Authorization": f"Bearer {proc.admin_token}"})
        assert admin.json()["store_only"] is True
