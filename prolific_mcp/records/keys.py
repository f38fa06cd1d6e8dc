"""How a file's keys compare with a schema's: the keys missing on each side and the likely renames between them
(docs/architecture.md, Files and pre-flight).

Under a non-strict schema a record with none of the schema's keys is accepted as an empty datapoint, and a key
spelt differently is dropped without a word from Prolific, so the pre-flight compares the keys itself.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

RENAME_CUTOFF: Final = 0.6
"""The least similarity at which a file key is offered as a rename of a schema key."""
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """The keys of a file against the keys of a schema."""

    schema_keys: list[str]
    file_keys: list[str]
    missing: list[str] = field(default_factory=list)
    """Schema keys no record has a value for."""
    unknown: list[str] = field(default_factory=list)
    """File keys the schema does not have: their values are dropped."""
    renames: list[tuple[str, str]] = field(default_factory=list)
    """(file key, schema key) pairs that are probably the same field spelt differently."""

    @property
    def shares_none(self) -> bool:
        """No key of the file is in the schema: every record would go in empty."""
        return bool(self.file_keys) and not set(self.file_keys) & set(self.schema_keys)

    @property
    def mismatch(self) -> bool:
        return bool(self.missing or self.unknown)


def _words(key: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(key)}


def similarity(a: str, b: str) -> float:
    """How likely two keys name the same field: 1 for the same letters, high when one contains the other or they
    share a word (`text` and `review_text`), else difflib's ratio."""
    na, nb = re.sub(r"[\W_]+", "", a.lower()), re.sub(r"[\W_]+", "", b.lower())
    if na == nb:
        return 1.0
    score = difflib.SequenceMatcher(None, na, nb).ratio()
    if min(len(na), len(nb)) >= 3 and (na in nb or nb in na):
        score = max(score, 0.85)
    if _words(a) & _words(b):
        score = max(score, 0.75)
    return score


def likely_renames(missing: Sequence[str], unknown: Sequence[str]) -> list[tuple[str, str]]:
    """(file key, schema key) pairs, best first, each key used once."""
    scored = sorted(
        ((similarity(f, k), f, k) for k in missing for f in unknown),
        key=lambda t: (-t[0], missing.index(t[2])),
    )
    pairs: list[tuple[str, str]] = []
    used_f: set[str] = set()
    used_k: set[str] = set()
    for score, f, k in scored:
        if score < RENAME_CUTOFF or f in used_f or k in used_k:
            continue
        pairs.append((f, k))
        used_f.add(f)
        used_k.add(k)
    return pairs


def check_keys(schema_keys: Sequence[str], file_keys: Sequence[str], missing: Sequence[str]) -> KeyCheck:
    """Compare a file's keys (and the schema keys no record has a value for) with the schema's keys."""
    known = set(schema_keys)
    unknown = [k for k in file_keys if k not in known]
    return KeyCheck(
        schema_keys=list(schema_keys),
        file_keys=list(file_keys),
        missing=list(missing),
        unknown=unknown,
        renames=likely_renames(list(missing), unknown),
    )
