"""Rejected records grouped by cause, as every tool words them: one line per cause with its record numbers and fix,
excerpts, all bounded to MAX_TEXT characters (docs/architecture.md, Summaries and limits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from prolific_mcp.operations.results import FileExcerpt, RejectionGroupInfo
from prolific_mcp.records import missing_key_from_reason
from prolific_mcp.records.rules import RAW_FIELD
from prolific_mcp.text import fence, number_ranges, one_line, plural, visible
from prolific_mcp.uploads.groups import MAX_RECORD_NUMBERS, NOT_ITEMISED, OTHER, RejectionGroup
from prolific_mcp.uploads.rejections import MAX_EXCERPTS, MAX_GROUPS_SHOWN, MAX_TEXT


def suggest_fix(field_name: str | None, reason: str) -> str:
    """One plain fix for a cause of rejection."""
    lowered = reason.lower()
    missing = missing_key_from_reason(reason)
    if missing is not None:
        return f"give every record a value for '{missing}', or make the schema non-strict (set_schema, strict=false)"
    if reason == NOT_ITEMISED:
        return "Prolific did not list these records; compare the file with the records it did list to find them"
    if reason == OTHER:
        return "see each cause's fix in the structured result"
    for needle, fix in _ROW_FIXES:
        if needle in lowered:
            return fix
    if field_name == RAW_FIELD or "malformed json" in lowered or "not a json object" in lowered:
        return "make each line one complete JSON object (check quotes, commas and brackets)"
    for needle, fix in _FIXES:
        if needle in lowered:
            return fix
    return "correct the value as the reason says"


_ROW_FIXES: tuple[tuple[str, str], ...] = (
    (
        "cells but the header",
        "give the row exactly as many cells as the header has columns (quote cells that contain commas)",
    ),
    ("row is not valid csv", "check the row's quotes: a cell with a comma, quote or line break goes in double quotes"),
    ("not valid utf-8", "save the file as UTF-8"),
    ("this server reads of one", "split or shorten the record"),
)
"""Fixes for problems of a CSV row or an over-long line, checked before the JSON Lines fix."""


_FIXES: tuple[tuple[str, str], ...] = (
    ("exceeds maximum length", "shorten the text (or split the record in two)"),
    ("audio url", "link directly to a media file with one of the allowed extensions"),
    ("video url", "link directly to a media file with one of the allowed extensions"),
    ("url", "use absolute http(s) links with a host, such as https://cdn.example.com/file.png"),
    ("expected text", "write the value as a string (in quotes)"),
    ("task_group_id", "give each record a non-empty group id (a string or an integer)"),
    ("cells but the header", "quote cells that contain commas, or remove the extra cells"),
    ("utf-8", "save the file as UTF-8"),
    ("utf-16", "save the file as UTF-8"),
    ("json array", "write one JSON object per line (JSON Lines), without surrounding brackets"),
    ("pretty-printed", "write one JSON object per line (JSON Lines), without surrounding brackets"),
    ("header", "make the first line of the CSV the field keys, separated by commas"),
    ("delimiter", "export the CSV again with commas as separators"),
    ("empty", "check that the file has records in it"),
    ("no records", "check that the file has records in it"),
)
"""(a phrase of the reason, the fix), first match wins."""


def fix_of(group: RejectionGroup) -> str:
    return suggest_fix(group.field, group.reason)


def group_infos(groups: Sequence[RejectionGroup]) -> list[RejectionGroupInfo]:
    """The groups as the structured result shows them."""
    return [
        RejectionGroupInfo(
            field=g.key if g.field is None else g.field,
            reason=one_line(g.reason, 300),
            count=g.count,
            records=g.records,
            lines=g.lines,
            fix=fix_of(g),
        )
        for g in groups
    ]


def cause_line(n: int, group: RejectionGroup) -> str:
    """One group as every tool words it: 'n. field: reason — K records: records 1-3 and 5 more (lines 2-4). Fix: …'."""
    if group.reason == NOT_ITEMISED:
        return f"{n}. {NOT_ITEMISED}: {plural(group.count, 'record')}. Fix: {fix_of(group)}."
    if group.reason == OTHER:
        who = "other causes"
        reason = "several different problems (each cause's first records are in the structured result)"
    else:
        who = group.key or ("whole record" if group.field == RAW_FIELD else "record")
        reason = group.reason
    numbers = number_ranges(group.records, MAX_RECORD_NUMBERS)
    where = (f": record {numbers}" if len(group.records) == 1 else f": records {numbers}") if numbers else ""
    if group.count > len(group.records) and numbers:
        where += f" and {group.count - len(group.records):,} more"
    if group.lines:
        where += f" (line{'s' if len(group.lines) > 1 else ''} {number_ranges(group.lines, 5)})"
    return (
        f"{n}. {one_line(who, 60)}: {one_line(reason, 160)} — {plural(group.count, 'record')}{where}. "
        f"Fix: {fix_of(group)}."
    )


def _excerpts(groups: Sequence[RejectionGroup]) -> list[str]:
    out = []
    for group in groups:
        if group.excerpt and group.records:
            who = group.key or ("whole record" if group.field == RAW_FIELD else "record")
            out.append(f"record {group.records[0]} ({one_line(who, 40)}): {group.excerpt}")
    return out


def _cause_block(groups: Sequence[RejectionGroup], shown: int) -> str:
    """The first `shown` groups (NOT_ITEMISED always, last), then '… and N more causes (M records)' for the rest:
    the counts written out add up to every rejected record."""
    pinned = [g for g in groups if g.reason == NOT_ITEMISED]
    others = [g for g in groups if g.reason != NOT_ITEMISED]
    listed, hidden = others[:shown], others[shown:]
    lines = ["Rejected, by cause:"]
    lines += [cause_line(n, g) for n, g in enumerate([*listed, *pinned], 1)]
    if hidden:
        count = sum(g.count for g in hidden)
        lines.append(
            f"… and {plural(len(hidden), 'more cause')} ({plural(count, 'record')}; every group is in the "
            "structured result)."
        )
    return "\n".join(lines)


def bounded(
    head: Sequence[str],
    groups: Sequence[RejectionGroup],
    tail: Sequence[str] = (),
    *,
    excerpts: bool = True,
) -> str:
    """Head, the causes, excerpts and tail in at most MAX_TEXT characters: excerpts go first, then causes from the
    end (into the '… and N more' line); the NOT_ITEMISED group and the counts are never dropped."""
    quoted = _excerpts(groups)[:MAX_EXCERPTS] if excerpts else []
    shown = min(MAX_GROUPS_SHOWN, sum(g.reason != NOT_ITEMISED for g in groups))
    while True:
        parts = ["\n".join(head)] if head else []
        if groups:
            parts.append(_cause_block(groups, shown))
        if quoted:
            parts.append("Excerpts from your file:\n" + fence(quoted))
        if tail:
            parts.append("\n".join(tail))
        # Nothing invisible (control, format, bidi characters) reaches the agent, whatever the file or API held.
        text = visible("\n\n".join(parts))
        if len(text) <= MAX_TEXT:
            return text
        if quoted:
            quoted.pop()
        elif shown > 0:
            shown -= 1
        else:
            return text[: MAX_TEXT - 1] + "…"


def file_excerpts(groups: Sequence[RejectionGroup]) -> list[FileExcerpt]:
    """The quoted values of the groups, for the structured result's untrusted_file_excerpts."""
    return [
        FileExcerpt(record=g.records[0], field=g.key, text=one_line(g.excerpt, MAX_EXCERPT_TEXT))
        for g in groups
        if g.excerpt and g.records
    ]


MAX_EXCERPT_TEXT: Final = 200
