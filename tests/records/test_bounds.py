"""Memory stays bounded for any input, and integers beyond 64 bits stay exact (issue: reliability, weak items).

The long-line tests scan a 200 MB line (written sparse, so it costs no disk) in a child process that measures
its own peak resident memory: the line is reported as a finding with the cap, never parsed whole.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from prolific_mcp.records import RecordValidator, Schema, iter_records, record_digest
from prolific_mcp.records.formats import MAX_RECORD_BYTES, jsonl_lines
from prolific_mcp.records.rules import checked_exact_keys_of, exact_keys_of
from prolific_mcp.uploads.files import open_regular_file
from prolific_mcp.uploads.scan import scan_file

ROOT = Path(__file__).parents[2]
LONG = 200 * 1024 * 1024
GOOD = b'{"text": "fine", "id": 1}\n'


def _write_long_jsonl(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.write(GOOD * 400)  # a clean start: the encoding check reads the first bytes
        handle.write(b'{"text": "')
        handle.seek(LONG, io.SEEK_CUR)  # a 200 MB hole: read back as NUL bytes, no disk used
        handle.write(b'"}\n')
        handle.write(GOOD * 3)


def _write_long_csv(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.write(b"text,id\n" + b"fine,1\n" * 800)
        handle.write(b"x")
        handle.seek(LONG, io.SEEK_CUR)
        handle.write(b",2\n")
        handle.write(b"fine,3\n")


_SCAN = textwrap.dedent(
    """
    import resource, sys
    from prolific_mcp.records import Schema
    from prolific_mcp.uploads.files import open_regular_file
    from prolific_mcp.uploads.scan import scan_file
    from pathlib import Path
    schema = Schema.from_dict({"strict": False, "fields": {"text": {"type": "text"}, "id": {"type": "metadata"}}})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open_regular_file(Path(sys.argv[1])) as opened:
        report = scan_file(opened.fd, sys.argv[2], schema, expected_size=opened.size)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) // 1024)
    print(report.record_count, report.rejected, report.failure)
    for group in report.groups:
        print(group.field, group.records, group.lines, group.reason)
    """
)


def _scan_in_child(path: Path, fmt: str) -> tuple[int, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", _SCAN, str(path), fmt], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    first, *rest = out.stdout.splitlines()
    return int(first), rest


def test_a_200_mb_jsonl_line_is_a_finding_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    _write_long_jsonl(path)
    grown_mib, lines = _scan_in_child(path, "jsonl")
    assert grown_mib < 150, f"peak memory grew {grown_mib} MiB for a 200 MB line"
    assert lines[0] == "404 1 None", "every record counted, the long one rejected, the file not refused"
    assert lines[1].startswith("_raw [401] [401] Record is 200.0 MiB long, over the 10 MiB this server reads")


def test_a_200_mb_csv_line_is_a_finding_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    _write_long_csv(path)
    grown_mib, lines = _scan_in_child(path, "csv")
    assert grown_mib < 150, f"peak memory grew {grown_mib} MiB for a 200 MB line"
    assert lines[0] == "802 1 None"
    assert lines[1].startswith("_raw [801] [802] Line is 200.0 MiB long, over the 10 MiB")


def test_a_line_just_under_the_cap_is_read_and_one_just_over_is_skipped() -> None:
    fits = b'{"t": "' + b"a" * (MAX_RECORD_BYTES - 10) + b'"}\n'
    over = b'{"t": "' + b"a" * (MAX_RECORD_BYTES + 10) + b'"}\n'
    records = list(iter_records(io.BytesIO(GOOD + fits + over + GOOD), "jsonl"))
    assert [r.value is not None for r in records] == [True, True, False, True]
    assert [r.line for r in records] == [1, 2, 3, 4]
    assert records[2].raw_error is not None and "10 MiB" in records[2].raw_error
    assert [n for n, line in jsonl_lines(io.BytesIO(GOOD + over + GOOD)) if line is None] == [2]


def test_a_csv_field_over_the_cap_spread_over_lines_is_a_finding() -> None:
    body = b'"' + b"word\n" * (MAX_RECORD_BYTES // 5 + 10) + b'"'
    data = b"text,id\nfine,1\n" + body + b",2\nfine,3\n"
    records = list(iter_records(io.BytesIO(data), "csv"))
    assert records[0].value == {"text": "fine", "id": "1"}
    assert records[1].value is None and "field" in (records[1].raw_error or "")
    # The rest of the broken quoted field is read as rows of its own (as any CSV reader would), each bounded.
    assert all(len(str(r.value)) <= MAX_RECORD_BYTES + 100 for r in records)


def test_integers_beyond_64_bits_stay_exact_and_are_not_duplicates() -> None:
    big = 123456789012345678901234567890
    lines = [{"id": big, "n": [1, {"deep": -(2**70)}]}, {"id": big + 1, "n": []}, {"id": 2**64, "f": 1.5e300}]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in lines)
    records = list(iter_records(io.BytesIO(data), "jsonl"))
    assert [r.value for r in records] == lines
    assert type(records[0].value["id"]) is int  # type: ignore[index]
    schema = Schema.from_dict({"strict": False, "fields": {"id": {"type": "metadata"}}})
    check = RecordValidator(schema).check
    normalised = [check(r.value)[0] for r in records[:2]]  # type: ignore[arg-type]
    assert normalised == [{"id": big}, {"id": big + 1}]
    digests = [record_digest(n) for n in normalised if n is not None]
    assert digests[0] != digests[1], "records that differ only in a 30-digit id are not duplicates"
    assert record_digest({"id": big}) == record_digest({"id": big}), "the identity is stable"
    assert record_digest({"a": 1, "b": "x"}) == record_digest({"b": "x", "a": 1})


def test_a_task_group_id_beyond_64_bits_is_an_integer_and_accepted() -> None:
    schema = Schema.from_dict(
        {"strict": True, "fields": {"text": {"type": "text"}, "group": {"type": "task_group_id"}}}
    )
    data = b'{"text": "a", "group": 98765432109876543210987}\n{"text": "b", "group": 1.5}\n'
    problem = RecordValidator(schema).problem
    values = [r.value for r in iter_records(io.BytesIO(data), "jsonl")]
    assert problem(values[0]) is None  # type: ignore[arg-type]
    assert problem(values[1]) is not None  # type: ignore[arg-type]


def test_the_schema_fields_that_take_numbers_are_kept_exact(tmp_path: Path) -> None:
    schema = Schema.from_dict(
        {
            "strict": True,
            "fields": {
                "text": {"type": "text"},
                "group": {"type": "task_group_id"},
                "meta": {"type": "metadata"},
                "extra": {"type": "metadata"},
            },
        }
    )
    assert exact_keys_of(schema) == ("group", "meta", "extra")
    assert checked_exact_keys_of(schema) == ("group",), "the scan needs exact only what its checks tell apart"
    big = 98765432109876543210987
    data = (
        json.dumps({"text": "a", "group": big, "meta": {"id": big}, "extra": 1}).encode()
        + b"\n"
        + json.dumps({"text": "b", "group": big + 1, "meta": None, "extra": None}).encode()
        + b"\n"
    )
    for keys in (("meta",), ("group", "meta"), exact_keys_of(schema)):
        values = [r.value for r in iter_records(io.BytesIO(data * 2), "jsonl", exact_keys=keys)]
        assert values[2]["meta"] == {"id": big}  # type: ignore[index]
    path = tmp_path / "groups.jsonl"
    path.write_bytes(data)
    with open_regular_file(path) as opened:
        report = scan_file(opened.fd, "jsonl", schema, expected_size=opened.size)
    assert (report.ok, report.record_count, report.rejected) == (True, 2, 1), "only the record missing 'meta'"


def test_an_over_long_first_line_is_a_finding_too() -> None:
    long_line = b'{"t": "' + b"a" * (MAX_RECORD_BYTES + 10) + b'"}\n'
    records = list(iter_records(io.BytesIO(long_line + GOOD), "jsonl"))
    assert [(r.index, r.line, r.value is None) for r in records] == [(0, 1, True), (1, 2, False)]
    assert "10 MiB" in (records[0].raw_error or "")
