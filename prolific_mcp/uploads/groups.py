"""Rejected records grouped by cause, within fixed limits: one type for the pre-flight's findings and for
Prolific's itemised errors (docs/architecture.md, Summaries and limits)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from prolific_mcp.records import missing_key_from_reason
from prolific_mcp.records.rules import RAW_FIELD

MAX_GROUPS: Final = 50
"""At most this many groups in a structured result (two are kept for OTHER and NOT_ITEMISED)."""
MAX_RECORD_NUMBERS: Final = 20
"""At most this many record (and line) numbers per group."""
NOT_ITEMISED: Final = "not itemised by Prolific"
OTHER: Final = "other causes (more kinds of problem than a summary lists)"


@dataclass(frozen=True, slots=True)
class ErrorItem:
    """One rejected record as reported (all parts optional, as Prolific documents its `errors` entries)."""

    record_index: int | None
    field: str | None
    reason: str | None


@dataclass(slots=True)
class RejectionGroup:
    """Rejected records that share a cause: how many, and the first record indexes and line numbers."""

    field: str | None
    reason: str
    count: int = 0
    record_indexes: list[int] = dataclasses.field(default_factory=list)
    """0-based indexes of the first records (at most MAX_RECORD_NUMBERS)."""
    lines: list[int] = dataclasses.field(default_factory=list)
    excerpt: str | None = None

    @property
    def key(self) -> str | None:
        """The field concerned: the named one, or the key a 'missing required field' reason names."""
        if self.field is not None and self.field != RAW_FIELD:
            return self.field
        return missing_key_from_reason(self.reason)

    @property
    def records(self) -> list[int]:
        """1-based record numbers, as people count."""
        return [i + 1 for i in self.record_indexes]


class Grouper:
    """Collects rejected records into groups by (field, reason), within the limits; `groups()` orders them."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str | None, str], RejectionGroup] = {}
        self._seen: set[int] = set()
        self.added = 0

    def add(self, field: str | None, reason: str | None, index: int | None, line: int | None = None) -> None:
        """Count one rejected record (a record index seen before is not counted twice)."""
        if index is not None:
            if index in self._seen:
                return
            self._seen.add(index)
        self.added += 1
        key = (field, reason or "no reason given")
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= MAX_GROUPS - 2:  # room for 'other problems' and 'not itemised'
                key = (None, OTHER)
                group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = RejectionGroup(key[0], key[1])
        group.count += 1
        if index is not None and len(group.record_indexes) < MAX_RECORD_NUMBERS:
            group.record_indexes.append(index)
            if line is not None:
                group.lines.append(line)

    def groups(self, rejected_count: int | None = None) -> list[RejectionGroup]:
        """Largest first, then the OTHER group (never first: it names no single cause); with `rejected_count`, the
        records counted but not listed form a last NOT_ITEMISED group."""
        ordered = sorted(
            self._groups.values(), key=lambda g: (g.reason == OTHER, -g.count, g.record_indexes[:1] or [0])
        )
        if rejected_count is not None and rejected_count > self.added:
            ordered.append(RejectionGroup(None, NOT_ITEMISED, count=rejected_count - self.added))
        return ordered


def group_errors(errors: Iterable[ErrorItem], rejected_count: int) -> list[RejectionGroup]:
    """Prolific's itemised errors grouped; the counts add up to `rejected_count`."""
    grouper = Grouper()
    for item in errors:
        grouper.add(item.field, item.reason, item.record_index)
    return grouper.groups(rejected_count)
