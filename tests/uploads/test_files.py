from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from prolific_mcp.records import FileFormat, Schema
from prolific_mcp.records.keys import check_keys
from prolific_mcp.uploads.files import FileAccessError, open_regular_file, resolve_path, upload_filename
from prolific_mcp.uploads.scan import scan_file

SCHEMA = Schema.from_dict(
    {"strict": True, "fields": {"text": {"type": "text"}, "img": {"type": "image_url"}, "src": {"type": "metadata"}}}
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    return proj


def _jsonl(path: Path, records: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_relative_paths_start_at_the_first_allowed_dir(root: Path) -> None:
    _jsonl(root / "a.jsonl", [{"text": "x"}])
    assert resolve_path("a.jsonl", [root]) == (root / "a.jsonl").resolve()
    assert resolve_path(str(root / "a.jsonl"), [root]) == (root / "a.jsonl").resolve()


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b"])
def test_empty_and_nul_paths(root: Path, bad: str) -> None:
    with pytest.raises(FileAccessError, match=r"empty|NUL"):
        resolve_path(bad, [root])


def test_outside_traversal_sibling_prefix_and_symlinks_are_refused(root: Path, tmp_path: Path) -> None:
    evil = tmp_path / "proj-evil"
    evil.mkdir()
    _jsonl(evil / "a.jsonl", [{}])
    _jsonl(tmp_path / "outside.jsonl", [{}])
    (root / "link.jsonl").symlink_to(tmp_path / "outside.jsonl")
    (root / "dirlink").symlink_to(evil, target_is_directory=True)
    for raw in (
        str(evil / "a.jsonl"),
        "../outside.jsonl",
        "../proj-evil/a.jsonl",
        "link.jsonl",
        "dirlink/a.jsonl",
        "/etc/passwd",
    ):
        with pytest.raises(FileAccessError, match="outside the allowed directories") as err:
            resolve_path(raw, [root])
        assert "PROLIFIC_MCP_ALLOWED_DIRS" in str(err.value)


def test_a_symlink_inside_the_root_to_a_file_inside_is_fine(root: Path) -> None:
    _jsonl(root / "real.jsonl", [{}])
    (root / "alias.jsonl").symlink_to(root / "real.jsonl")
    assert resolve_path("alias.jsonl", [root]) == (root / "real.jsonl").resolve()


def test_no_allowed_dirs_and_missing_files_say_what_to_do(root: Path) -> None:
    with pytest.raises(FileAccessError, match="PROLIFIC_MCP_ALLOWED_DIRS"):
        resolve_path("a.jsonl", [])
    with pytest.raises(FileAccessError, match="no file at"):
        resolve_path("missing.jsonl", [root])


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev/zero are POSIX")
def test_special_files_are_refused_without_blocking(root: Path) -> None:
    os.mkfifo(root / "pipe.jsonl")
    (root / "sub").mkdir()
    (root / "zero.jsonl").symlink_to("/dev/zero")
    for name, kind in (("pipe.jsonl", "named pipe"), ("sub", "directory")):
        with pytest.raises(FileAccessError, match=kind):
            open_regular_file(resolve_path(name, [root]))
    with pytest.raises(FileAccessError, match="outside"):
        resolve_path("zero.jsonl", [root])


def test_empty_and_oversized_files(root: Path) -> None:
    (root / "empty.jsonl").write_bytes(b"")
    with pytest.raises(FileAccessError, match="empty"):
        open_regular_file(resolve_path("empty.jsonl", [root]))
    big = root / "big.jsonl"
    with open(big, "wb") as f:
        f.truncate(5 * 1024**3 + 1)  # sparse: no disk used
    with pytest.raises(FileAccessError, match="split it"):
        open_regular_file(resolve_path("big.jsonl", [root]))


def test_scan_hashes_counts_and_groups_in_one_pass(root: Path) -> None:
    records: list[object] = [{"text": f"t{i}", "img": f"https://x.example/{i}.png", "src": i} for i in range(30)]
    records[3] = {"text": "t", "img": "nope", "src": 1}
    records[7] = {"img": "https://x.example/a.png", "src": 1}
    records[8] = {"img": "https://x.example/b.png"}
    path = _jsonl(root / "a.jsonl", records)
    with path.open("ab") as f:
        f.write(b"{broken\n")
    with open_regular_file(resolve_path("a.jsonl", [root])) as opened:
        report = scan_file(opened.fd, "jsonl", SCHEMA, expected_size=opened.size)
        assert os.lseek(opened.fd, 0, os.SEEK_CUR) == 0  # positional reads only
    assert report.ok
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (report.size, report.record_count, report.rejected) == (path.stat().st_size, 31, 4)
    got = {(g.key or g.field, g.count): g.records for g in report.groups}
    assert got == {("text", 2): [8, 9], ("img", 1): [4], ("_raw", 1): [31]}


def test_the_scan_hash_of_a_file_of_many_chunks_is_the_files_and_its_thread_ends(root: Path) -> None:
    """The sha256 is computed in a thread beside the parsing (files.py, _Sha256Thread): more chunks than its queue
    holds, a last partial chunk, and no thread left behind."""
    path = root / "many.jsonl"
    line = b'{"text": "' + b"x" * 1000 + b'"}\n'
    path.write_bytes(line * (12 * 1024 + 7))
    before = {t.name for t in threading.enumerate()}
    with open_regular_file(path) as opened:
        report = scan_file(opened.fd, "jsonl", expected_size=opened.size)
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (report.size, report.record_count) == (path.stat().st_size, 12 * 1024 + 7)
    assert "prolific-mcp-sha256" not in {t.name for t in threading.enumerate()} - before


def test_scan_refuses_what_is_certain_to_fail(root: Path) -> None:
    path = _jsonl(root / "a.jsonl", [{"text": "a", "img": "https://x.example/1.png"}] * 3)
    with open_regular_file(path) as opened:
        report = scan_file(opened.fd, "jsonl", SCHEMA)
    assert not report.ok
    assert report.missing_everywhere == ["src"]
    assert "strict schema" in str(report.failure)
    (root / "arr.jsonl").write_text('[{"text": "a"}]')
    with open_regular_file(root / "arr.jsonl") as opened:
        report = scan_file(opened.fd, "jsonl", SCHEMA)
    assert "JSON array" in str(report.failure)
    assert report.sha256 == hashlib.sha256(b'[{"text": "a"}]').hexdigest()


def test_scan_without_a_schema_only_counts(root: Path) -> None:
    path = root / "a.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with open_regular_file(path) as opened:
        report = scan_file(opened.fd, "csv", None)
    assert (report.ok, report.record_count, report.groups) == (True, 2, [])


def test_scan_notices_a_file_that_changed_size(root: Path) -> None:
    path = _jsonl(root / "a.jsonl", [{"text": "a", "img": "https://x.example/1.png", "src": 1}])
    with open_regular_file(path) as opened:
        report = scan_file(opened.fd, "jsonl", SCHEMA, expected_size=opened.size + 5)
    assert "changed" in str(report.failure)


def test_upload_filename() -> None:
    assert upload_filename("/x/reviews.ndjson") == "reviews.jsonl"
    assert upload_filename("reviews.JSONL") == "reviews.JSONL"
    assert upload_filename("data.txt", "csv") == "data.csv"
    assert upload_filename("C:\\Users\\me\\r.csv") == "r.csv"


def test_strict_keys_are_tracked_across_records_whatever_other_keys_they_have(root: Path) -> None:
    """A first record with keys outside the schema must not stop the search for the schema's keys."""
    schema = Schema.from_dict({"strict": True, "fields": {"a": {"type": "text"}, "b": {"type": "text"}}})
    path = _jsonl(root / "a.jsonl", [{"a": "x", "extra": 1, "more": 2}, {"b": "y"}])
    with open_regular_file(resolve_path("a.jsonl", [root])) as opened:
        report = scan_file(opened.fd, "jsonl", schema)
    assert report.ok, report.failure
    assert (report.record_count, report.rejected, report.missing_everywhere) == (2, 2, [])
    _jsonl(path, [{"a": "x", "extra": 1}, {"a": None, "b": None}])
    with open_regular_file(resolve_path("a.jsonl", [root])) as opened:
        report = scan_file(opened.fd, "jsonl", schema)
    assert report.missing_everywhere == ["b"]
    assert report.failure is not None and "no record has the field b" in report.failure


def _clearance(path: Path, fmt: FileFormat, schema: Schema | None) -> tuple[list[int], bool]:
    """(where the scan had read to when it cleared the file, if it did; whether the file is certain to fail)."""
    read: list[int] = []
    cleared_at: list[int] = []
    with open_regular_file(path) as opened:
        report = scan_file(
            opened.fd,
            fmt,
            schema,
            on_read=read.append,
            on_cleared=lambda: cleared_at.append(read[-1]),
        )
    shares_none = schema is not None and check_keys(schema.keys, report.file_keys, report.missing_keys).shares_none
    return cleared_at, report.failure is not None or (shares_none and report.parsed > 0)


def test_a_scan_clears_a_file_once_no_failure_of_the_whole_file_is_left(root: Path) -> None:
    """`on_cleared` comes once, at the first record that rules out every failure of the whole file, and never for
    a file certain to fail (docs/architecture.md, Files and pre-flight: the PUT's last chunk waits for it)."""
    chunk = 1024 * 1024
    full = {"text": "a review of some length " * 8, "img": "https://x.example/1.png", "src": "s"}
    many = 30_000  # about 7 MB: several chunks
    good = _jsonl(root / "good.jsonl", [full] * many)
    assert _clearance(good, "jsonl", SCHEMA) == ([chunk], False), "at the first record"
    late = _jsonl(root / "late.jsonl", [{k: v for k, v in full.items() if k != "src"}] * many + [full])
    assert _clearance(late, "jsonl", SCHEMA) == ([late.stat().st_size], False), "a strict key seen at the end"
    loose = Schema.from_dict({"strict": False, "fields": {"text": {"type": "text"}, "other": {"type": "text"}}})
    shared_late = _jsonl(root / "shared.jsonl", [{"note": "x"}] * many + [full])
    assert _clearance(shared_late, "jsonl", loose) == ([shared_late.stat().st_size], False), "a shared key at the end"
    assert _clearance(good, "jsonl", None) == ([chunk], False), "without a schema: the first record"
    csv_file = root / "good.csv"
    csv_file.write_text("text,img,src\n" + "a,https://x.example/1.png,s\n" * 3)
    assert _clearance(csv_file, "csv", SCHEMA) == ([csv_file.stat().st_size], False)
    certain = {
        "missing.jsonl": [{k: v for k, v in full.items() if k != "src"}] * many,
        "unshared.jsonl": [{"note": "x"}] * many,
    }
    for name, rows in certain.items():
        assert _clearance(_jsonl(root / name, rows), "jsonl", SCHEMA) == ([], True), name
    (root / "lines.jsonl").write_text('"just a string"\n[1, 2]\n')
    (root / "array.jsonl").write_text('[{"text": "a"}]\n')
    (root / "empty.jsonl").write_text("\n\n")
    for name in ("lines.jsonl", "array.jsonl", "empty.jsonl"):
        assert _clearance(root / name, "jsonl", SCHEMA) == ([], True), name
