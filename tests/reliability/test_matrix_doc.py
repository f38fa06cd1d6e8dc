"""docs/reliability.md stays true: every matrix row is there, says what happens, and names tests that exist; every
test in tests/reliability/ is named on the page."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
GROUPS = {"F": 9, "O": 4, "K": 4, "R": 3, "T": 6, "S": 10, "A": 9, "M": 4}
EXPECTED_ROWS = [f"{letter}{n}" for letter, count in GROUPS.items() for n in range(1, count + 1)]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+(?:::\w+)?)`")


def table_rows() -> dict[str, tuple[str, str]]:
    """Row id → (what the server does, the tests cell), from the page's matrix table."""
    rows: dict[str, tuple[str, str]] = {}
    in_table = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| Row |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if not in_table or line.startswith("|---"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"a matrix row needs 4 cells (row, fault, behaviour, tests): {line[:80]}"
        row, _fault, behaviour, tests = cells
        assert row not in rows, f"row {row} appears twice"
        rows[row] = (behaviour, tests)
    return rows


@cache
def names_in(path: str) -> frozenset[str]:
    """`name` and `Class::name` of every test function in a file, read with ast (nothing is imported)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test_"):
                    names.add(f"{node.name}::{item.name}")
    return frozenset(names)


def test_every_matrix_row_is_accounted_for() -> None:
    rows = table_rows()
    assert list(rows) == EXPECTED_ROWS, "the table must list the 49 rows, in the matrix's order"
    for row, (behaviour, tests) in rows.items():
        assert len(behaviour) > 40, f"{row}: say what the server does (or why the row does not apply)"
        assert REFERENCE.findall(tests), f"{row}: name at least one test as `path::test_name`"


@pytest.mark.parametrize("row", EXPECTED_ROWS)
def test_each_listed_test_exists(row: str) -> None:
    _behaviour, tests = table_rows()[row]
    cell = re.sub(r"<br>", " ", tests)
    leftover = REFERENCE.sub("", cell).strip()
    assert not leftover, f"{row}: the tests cell holds something that is not a test reference: {leftover!r}"
    for path, name in REFERENCE.findall(tests):
        assert (ROOT / path).is_file(), f"{row}: no file {path}"
        assert name in names_in(path), f"{row}: {path} has no test {name}"


def test_every_reference_on_the_page_exists_and_every_reliability_test_is_named() -> None:
    text = DOC.read_text(encoding="utf-8")
    referenced = set(REFERENCE.findall(text))
    for path, name in referenced:
        assert name in names_in(path), f"{path}::{name} is named in docs/reliability.md but does not exist"
    here = Path(__file__).resolve().parent
    for file in sorted(here.glob("test_*.py")):
        if file.name == Path(__file__).name:
            continue
        path = file.relative_to(ROOT).as_posix()
        for name in names_in(path):
            assert (path, name) in referenced, f"{path}::{name} is not named in docs/reliability.md"
