"""one_line reads only what it keeps: the same result as folding the whole text, in memory bounded by its limit."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from prolific_mcp.text import _SPACE_LIKE, hidden, one_line


def _fold_all(text: str, limit: int) -> str:
    """The definition: clean every character, fold all white space, then cut."""
    cleaned = "".join(" " if ch == "\n" or ch in _SPACE_LIKE else ("" if hidden(ch) else ch) for ch in text)
    folded = " ".join(cleaned.split())
    return folded[: max(0, limit - 1)].rstrip() + "…" if len(folded) > limit else folded


PIECES = ["a", "bc", " ", "\n", "\t", "é", "\u200b", "\x00", "\u2028", "\u3000", "x" * 50, " " * 1500, "\u200b" * 1100]


@pytest.mark.parametrize("seed", range(5))
def test_the_same_as_folding_the_whole_text_across_window_boundaries(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(400):
        text = "".join(rnd.choice(PIECES) for _ in range(rnd.randrange(60)))
        for limit in (0, 1, 5, 80, 300):
            assert one_line(text, limit) == _fold_all(text, limit), (text, limit)


@pytest.mark.parametrize("text", ["word " * 1_000_000, "é" * 4_000_000, "x" * 4_000_000, " " * 4_000_000 + "end"])
def test_a_huge_value_costs_what_its_excerpt_does(text: str) -> None:
    tracemalloc.start()
    try:
        got = one_line(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == _fold_all(text, 80)
    assert peak < 200_000  # the text itself is 4-16 MB; the old fold made a list of every word
