"""The pieces behind the agent's answers, tested directly: the progress throttle (on a virtual clock), key
renames, binary and UTF-16 detection, and the one bounded rejection summary."""

from __future__ import annotations

import re

import pytest

from prolific_mcp.operations import render
from prolific_mcp.operations.progress import HEARTBEAT, Throttle
from prolific_mcp.records.formats import encoding_problem
from prolific_mcp.records.keys import check_keys, likely_renames
from prolific_mcp.uploads.groups import NOT_ITEMISED, OTHER, ErrorItem, group_errors
from prolific_mcp.uploads.rejections import MAX_TEXT

pytestmark = pytest.mark.anyio


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_throttle_rounds_rises_limits_and_keeps_news() -> None:
    ticks = Ticks()
    sent: list[tuple[float, str]] = []

    async def send(value: float, message: str) -> None:
        sent.append((value, message))

    throttle = Throttle(send, ticks)
    await throttle(0.0, "starting the upload of a.jsonl")
    for n in range(1, 200):  # 200 byte updates within 0.2 s: only whole percents 250 ms apart would pass
        ticks.now = n * 0.001
        await throttle(50.0 * n / 200, f"uploading a.jsonl: {n} of 200 KB")
    assert len(sent) == 2, "news once, then no update that only moves a number within 250 ms"
    ticks.now = 0.3
    await throttle(50.019999999999996, "uploaded a.jsonl; waiting for Prolific to pick it up")
    assert sent[-1] == (50.0, "uploaded a.jsonl; waiting for Prolific to pick it up")
    ticks.now = 0.31
    await throttle(50.0, "import status: archiving")  # news at the same value: nudged up, never dropped
    assert sent[-1][0] == 50.1 and "archiving" in sent[-1][1]
    await throttle(50.0, "import status: archiving")
    assert len(sent) == 4
    ticks.now = 0.31 + HEARTBEAT
    await throttle(50.0, "import status: archiving")  # a heartbeat
    assert sent[-1][0] == 50.2
    await throttle(100.0, "complete: a.jsonl")
    await throttle(100.0, "complete: a.jsonl")
    values = [v for v, _ in sent]
    assert values == sorted(set(values)) and values[-1] == 100.0 and values.count(100.0) == 1
    assert all(v == round(v, 1) for v in values)


def test_likely_renames_pair_keys_spelt_differently() -> None:
    assert likely_renames(["review_text", "photo"], ["text", "url"]) == [("text", "review_text")]
    assert likely_renames(["Review"], ["review"]) == [("review", "Review")]
    assert likely_renames(["alpha"], ["zzz"]) == []
    check = check_keys(["review_text", "source"], ["text", "source"], ["review_text"])
    assert (check.missing, check.unknown, check.shares_none, check.mismatch) == (
        ["review_text"],
        ["text"],
        False,
        True,
    )
    assert check_keys(["a"], ["b"], ["a"]).shares_none


@pytest.mark.parametrize(
    ("head", "says"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file (a PNG image)"),
        (b"PK\x03\x04\x14\x00", "Excel .xlsx"),
        (b'{"a": 1}\x00\x01\x02\n', "binary file"),
        ("a,b\n1,2\n".encode("utf-16-le"), "UTF-16"),
        ("a,b\n1,2\n".encode("utf-16-be"), "UTF-16"),
        ("a,b\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_binary_files_are_not_called_utf16(head: bytes, says: str) -> None:
    problem = encoding_problem(head)
    assert problem is not None and says in problem
    if says != "UTF-16":
        assert "UTF-16" not in problem


def test_the_summary_stays_bounded_and_its_counts_add_up() -> None:
    errors = [ErrorItem(i, f"field{i % 60}", f"bad value kind {i % 60}") for i in range(1000)]
    groups = group_errors(errors, 1500)
    assert groups[-1].reason == NOT_ITEMISED and groups[-1].count == 500
    assert groups[-2].reason == OTHER, "the group of other causes comes after every named cause"
    text = render.bounded(["Partial: a.jsonl: 10 accepted, 1,500 rejected."], groups)
    assert len(text) <= MAX_TEXT
    shown = sum(int(n.replace(",", "")) for n in re.findall(r"— ([\d,]+) records?", text))
    shown += sum(int(n.replace(",", "")) for n in re.findall(r"not itemised by Prolific: ([\d,]+) record", text))
    shown += sum(int(n.replace(",", "")) for n in re.findall(r"… and [\d,]+ more causes? \(([\d,]+) record", text))
    assert shown == 1500
    lines = [line for line in text.splitlines() if re.match(r"\d+\. ", line)]
    assert lines[-1].startswith(f"{len(lines)}. {NOT_ITEMISED}: 500 records")


def test_a_csv_row_with_the_wrong_number_of_cells_gets_a_csv_fix() -> None:
    fix = render.suggest_fix("_raw", "Row has 3 cells but the header has 2 columns")
    assert "as many cells as the header" in fix and "JSON" not in fix
