"""Picking rejected records out of a JSONL file reads lines in bounded memory (uploads/rejections.py): a line over
the record cap counts as a record, so the numbering stays right, but is never copied whole."""

from __future__ import annotations

import json
import os
from pathlib import Path

from prolific_mcp.records.formats import MAX_RECORD_BYTES
from prolific_mcp.uploads.rejections import pick_records


def test_a_line_over_the_cap_counts_but_is_never_copied(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    with path.open("wb") as out:
        out.write(b'{"review": "first"}\n')
        out.write(b'{"review": "' + b"x" * (MAX_RECORD_BYTES + 10) + b'"}\n')
        out.write(b"\n")  # blank lines are not records
        out.write(b'{"review": "third"}\n')
    fd = os.open(path, os.O_RDONLY)
    try:
        picked = list(pick_records(fd, "jsonl", {0, 1, 2}))
    finally:
        os.close(fd)
    assert [(p.index, p.line) for p in picked] == [(0, 1), (2, 4)], "record 2 (0-based 1) is counted, not copied"
    assert [json.loads(p.raw) for p in picked] == [{"review": "first"}, {"review": "third"}]
