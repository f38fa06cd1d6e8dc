from __future__ import annotations

import csv
import io

import orjson
import pytest

from prolific_mcp.records import FileFailure, RecordValidator, Schema, format_from_filename, iter_records


def _read(data: bytes, fmt: str = "jsonl", keys: list[str] | None = None) -> list[tuple[int, int, object, object]]:
    return [(r.index, r.line, r.value, r.raw_error) for r in iter_records(io.BytesIO(data), fmt, header_keys=keys)]  # type: ignore[arg-type]


def test_jsonl_records_with_blank_lines_bom_and_crlf() -> None:
    data = b'\xef\xbb\xbf{"a": 1}\r\n\n{"a": 2}\n   \n{"a": 3}'
    assert _read(data) == [(0, 1, {"a": 1}, None), (1, 3, {"a": 2}, None), (2, 5, {"a": 3}, None)]


def test_jsonl_unparseable_and_non_object_lines_are_raw_errors_with_their_line() -> None:
    rows = _read(b'{"a": 1}\n{"a": \n[1, 2]\n"text"\n{"a": 2}\n')
    assert [(i, line) for i, line, _, _ in rows] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert rows[1][3] is not None and str(rows[1][3]).startswith("Malformed JSON")
    assert rows[2][3] == "Record is not a JSON object (got an array)"
    assert rows[3][3] == "Record is not a JSON object (got a string)"
    assert rows[4][2] == {"a": 2}


def test_invalid_utf8_inside_a_later_record_is_that_records_raw_error() -> None:
    filler = b"".join(orjson.dumps({"n": i, "pad": "x" * 100}) + b"\n" for i in range(700))
    rows = _read(filler + b'{"bad": "\xff\xfe"}\n{"ok": 1}\n')
    assert rows[700][2] is None and rows[700][3] is not None
    assert rows[701][2] == {"ok": 1}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"\n \n", "empty"),
        (b'[{"a": 1}, {"a": 2}]', "JSON array"),
        (b'\n  [\n  {"a": 1}\n]', "JSON array"),
        (b'{\n  "a": 1\n}\n', "pretty-printed"),
        ('{"a": "b"}\n'.encode("utf-16"), "UTF-16"),
        (b'{"a": "caf\xe9"}\n', "not UTF-8"),
    ],
)
def test_whole_file_failures(data: bytes, needle: str) -> None:
    with pytest.raises(FileFailure, match=needle):
        _read(data)


def _csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()


def test_csv_empty_cells_are_missing_and_quoted_newlines_keep_line_numbers() -> None:
    data = _csv([["a", "b"], ["1", ""], ["multi\nline", "x"], ["3", "y"]])
    assert _read(data, "csv", ["a", "b"]) == [
        (0, 2, {"a": "1", "b": None}, None),
        (1, 3, {"a": "multi\nline", "b": "x"}, None),
        (2, 5, {"a": "3", "b": "y"}, None),
    ]


def test_csv_with_bom_short_and_long_rows() -> None:
    data = b"\xef\xbb\xbfa,b\r\n1\r\n1,2,3\r\n\r\n4,5\r\n"
    rows = _read(data, "csv", ["a", "b"])
    assert rows[0] == (0, 2, {"a": "1"}, None)
    assert rows[1][3] == "Row has 3 cells but the header has 2 columns"
    assert rows[2] == (2, 5, {"a": "4", "b": "5"}, None)


@pytest.mark.parametrize(
    ("data", "keys", "needle"),
    [
        (b"x,y\n1,2\n", ["a", "b"], "no header row"),
        (b"a;b\n1;2\n", ["a", "b"], "';' as its delimiter"),
        (b"a\tb\n1\t2\n", ["a", "b"], "a tab as its delimiter"),
        (b"a,a\n1,2\n", None, "twice"),
        (b"a,,b\n1,2,3\n", None, "empty column name"),
        ("a,b\n1,2\n".encode("utf-16-le"), None, "UTF-16"),
    ],
)
def test_csv_whole_file_failures(data: bytes, keys: list[str] | None, needle: str) -> None:
    with pytest.raises(FileFailure, match=needle):
        _read(data, "csv", keys)


def test_a_header_only_csv_has_no_records_and_v3_headers_need_no_schema() -> None:
    assert _read(b"a,b\n", "csv", ["a"]) == []
    assert _read(b"text,META_x\nhi,1\n", "csv", None) == [(0, 2, {"text": "hi", "META_x": "1"}, None)]


def test_format_from_filename() -> None:
    assert format_from_filename("x.JSONL") == "jsonl"
    assert format_from_filename("x.ndjson") == "jsonl"
    assert format_from_filename("dir/x.csv") == "csv"
    assert format_from_filename("x.json") is None
    assert format_from_filename("x") is None


def test_the_contract_csv_rejects_exactly_four_rows() -> None:
    """The shared contract's CSV: rows 5, 12, 20 and 33 (1-based) are the defective ones."""
    rows = [["prompt", "response", "image", "batch"]]
    for i in range(40):
        row = [f"Prompt {i}", f"Response {i}", f"https://cdn.example.net/{i}.png", f"b{i % 4}"]
        row[0] = "p" * 10001 if i == 4 else row[0]
        row[1] = "" if i == 11 else row[1]
        row[2] = {19: "ftp://cdn.example.net/x.png", 32: "https://"}.get(i, row[2])
        rows.append(row)
    schema = Schema.from_dict(
        {
            "strict": True,
            "fields": {
                "prompt": {"type": "text"},
                "response": {"type": "text"},
                "image": {"type": "image_url"},
                "batch": {"type": "task_group_id"},
            },
        }
    )
    validator = RecordValidator(schema)
    problems = {}
    for raw in iter_records(io.BytesIO(_csv(rows)), "csv", header_keys=schema.keys):
        assert raw.value is not None
        _, problem = validator.check(raw.value)
        if problem:
            problems[raw.index] = problem[0]
    assert problems == {4: "prompt", 11: None, 19: "image", 32: "image"}


def test_jsonl_first_record_problems_after_blank_lines_keep_their_index_and_line() -> None:
    rows = _read(b'\n  \n{"a": \n"text"\n{"a": 1}\n')
    assert [(i, line, value) for i, line, value, _ in rows] == [(0, 3, None), (1, 4, None), (2, 5, {"a": 1})]
    assert str(rows[0][3]).startswith("Malformed JSON")
    assert rows[1][3] == "Record is not a JSON object (got a string)"
    assert _read(b'\xef\xbb\xbf"only"\n') == [(0, 1, None, "Record is not a JSON object (got a string)")]
