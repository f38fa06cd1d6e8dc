"""Schema work that needs no network: suggesting a schema from a file, and the diff between two schemas."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from prolific_mcp.records import (
    MAX_FIELDS,
    MAX_KEY_LENGTH,
    FileFailure,
    FileFormat,
    Schema,
    iter_records,
)
from prolific_mcp.records.rules import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, url_path

SAMPLE_RECORDS: Final = 1000
GROUP_KEYS: Final = frozenset({"task_group_id", "meta_task_group_id", "task_group", "taskgroupid"})
_ID_LIKE = re.compile(r"(?i)^(id|uuid|guid|key|row|index|idx|.*[_\- ]id|.*[_\- ]uuid|.*Id)$")


@dataclass(slots=True)
class SuggestedSchema:
    """Fields ready for create_dataset/set_schema, with why each type was chosen."""

    fields: dict[str, dict[str, str]]
    strict: bool
    sampled: int
    notes: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


def _label(key: str) -> str:
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", key.removeprefix("META_")).replace("_", " ").replace("-", " ")
    words = " ".join(words.split())
    return (words[:1].upper() + words[1:])[:255] if words else key[:255]


def _url_kind(values: list[object]) -> str | None:
    """The media kind (image_url/audio_url/video_url) of a column when at least 80% of its values are http(s)
    links to files of that kind; 'url' when they are mostly other links; None when they are mostly not links."""
    counts: dict[str, int] = {}
    for value in values:
        path = url_path(value) if isinstance(value, str) else None
        if path is None:
            kind = "other"
        else:
            lowered = path.lower()
            if lowered.endswith(AUDIO_EXTENSIONS):
                kind = "audio_url"
            elif lowered.endswith(VIDEO_EXTENSIONS):
                kind = "video_url"
            elif lowered.endswith(IMAGE_EXTENSIONS):
                kind = "image_url"
            else:
                kind = "url"
        counts[kind] = counts.get(kind, 0) + 1
    if not values:
        return None
    best = max(counts, key=lambda k: counts[k])
    if best == "other" or counts[best] < 0.8 * len(values):
        links = sum(n for k, n in counts.items() if k != "other")
        return "url" if links >= 0.8 * len(values) else None
    return best


@dataclass(slots=True)
class _Sample:
    """What the first records of a file hold: up to 50 values per key, how many records give each key a value, and
    the records that could not be read (the first few, as (line, reason), all counted in `skipped`)."""

    values: dict[str, list[object]] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    sampled: int = 0
    unreadable: list[tuple[int, str]] = field(default_factory=list)
    skipped: int = 0


def _read_sample(fd: int, fmt: FileFormat, sample: int) -> _Sample:
    got = _Sample()
    with os.fdopen(os.dup(fd), "rb", buffering=io.DEFAULT_BUFFER_SIZE) as stream:
        stream.seek(0)
        try:
            for rec in iter_records(stream, fmt):
                if rec.value is None:
                    got.skipped += 1
                    if len(got.unreadable) < 10:
                        got.unreadable.append((rec.line, rec.raw_error or "unreadable"))
                    if got.skipped >= sample and not got.sampled:
                        break
                    continue
                got.sampled += 1
                for key, value in rec.value.items():
                    bucket = got.values.setdefault(key, [])
                    if value is not None and value != "":
                        got.present[key] = got.present.get(key, 0) + 1
                        if len(bucket) < 50:
                            bucket.append(value)
                if got.sampled >= sample:
                    break
        except FileFailure as exc:
            raise ValueError(exc.reason) from None
    return got


def _field_type(key: str, seen: list[object], group_free: bool) -> tuple[str, str]:
    """The suggested type of one column, and why."""
    if key.lower() in GROUP_KEYS and group_free:
        return "task_group_id", "named as a task group id"
    if key.startswith("META_"):
        return "metadata", "META_ columns are hidden from participants"
    if _ID_LIKE.match(key):
        return "metadata", "looks like an identifier"
    if not seen:
        return "text", "no values in the sample; text is the safe default"
    if sum(not isinstance(v, str) for v in seen) > len(seen) // 5:
        return "metadata", "holds numbers, booleans or objects rather than text"
    kind = _url_kind(seen)
    if kind in ("image_url", "audio_url", "video_url"):
        return kind, f"the values are links to {kind.split('_')[0]} files"
    if kind == "url":
        return "text", "links without an image, audio or video extension are kept as text"
    return "text", "free text"


def _unreadable_note(got: _Sample, fmt: FileFormat) -> str | None:
    """None when every sampled line was read; raises when none was."""
    if not got.skipped:
        return None
    line, reason = got.unreadable[0]
    if not got.sampled:
        what = "the file is not JSON Lines: none of its lines" if fmt == "jsonl" else "none of the CSV's rows"
        raise ValueError(f"{what} could be read as a record (line {line}: {reason})")
    many = got.skipped > 1
    lines = ", ".join(str(n) for n, _ in got.unreadable) + (", …" if got.skipped > len(got.unreadable) else "")
    return (
        f"{got.skipped:,} line{'s' if many else ''} could not be read and {'were' if many else 'was'} "
        f"left out (line{'s' if many else ''} {lines}; line {line}: {reason[:120]}): validate_file lists them all"
    )


def suggest_schema(fd: int, fmt: FileFormat, sample: int = SAMPLE_RECORDS) -> SuggestedSchema:
    """Suggest field types from the first `sample` records of a file (read through the descriptor).

    URL columns become image_url/audio_url/video_url by extension; id-like and `META_` columns metadata;
    `task_group_id` only when the column is plainly named so; everything else text (non-string values metadata).
    """
    got = _read_sample(fd, fmt, sample)
    note = _unreadable_note(got, fmt)
    notes = [note] if note else []
    fields: dict[str, dict[str, str]] = {}
    reasons: dict[str, str] = {}
    group_taken = False
    for key, seen in got.values.items():
        if len(fields) >= MAX_FIELDS:
            notes.append(f"only the first {MAX_FIELDS} columns were kept (a schema has at most {MAX_FIELDS} fields)")
            break
        if not 1 <= len(key) <= MAX_KEY_LENGTH:
            notes.append(f"column {key[:40]!r} was skipped: keys are 1 to {MAX_KEY_LENGTH} characters")
            continue
        ftype, reasons[key] = _field_type(key, seen, not group_taken)
        group_taken = group_taken or ftype == "task_group_id"
        fields[key] = {"type": ftype, "label": _label(key)}
    everywhere = bool(got.values) and all(got.present.get(k, 0) == got.sampled for k in fields)
    if not fields:
        notes.append("no records with fields were found in the sample")
    if everywhere and got.sampled:
        notes.append("every sampled record has every field: strict=true would also reject future records missing one")
    if not group_taken:
        notes.append("no task_group_id column was obvious: records will be grouped by tasks_per_group")
    return SuggestedSchema(fields=fields, strict=False, sampled=got.sampled, notes=notes, reasons=reasons)


@dataclass(slots=True)
class SchemaDiff:
    """What a new schema changes relative to the current one."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retyped: list[tuple[str, str, str]] = field(default_factory=list)
    relabelled: list[str] = field(default_factory=list)
    strict_changed: tuple[bool, bool] | None = None
    task_group_moved: tuple[str | None, str | None] | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.retyped
            or self.relabelled
            or self.strict_changed
            or self.task_group_moved
        )

    @property
    def destructive(self) -> bool:
        """Removals and type changes re-normalise (and may null) existing datapoints; strict false → true re-checks
        every datapoint against fields it may lack. The same rule for the check, the dry run and the next call."""
        return bool(self.removed or self.retyped or self.strict_changed == (False, True))

    def describe(self) -> list[str]:
        lines = []
        if self.added:
            lines.append("add " + ", ".join(self.added))
        if self.removed:
            lines.append("remove " + ", ".join(self.removed))
        for key, old, new in self.retyped:
            lines.append(f"change {key} from {old} to {new}")
        if self.relabelled:
            lines.append("relabel " + ", ".join(self.relabelled))
        if self.strict_changed:
            lines.append(f"strict {str(self.strict_changed[0]).lower()} → {str(self.strict_changed[1]).lower()}")
        return lines or ["no change"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "retyped": [{"field": k, "from": a, "to": b} for k, a, b in self.retyped],
            "relabelled": self.relabelled,
            "strict_changed": list(self.strict_changed) if self.strict_changed else None,
        }


def schema_diff(old: Schema | None, new: Schema) -> SchemaDiff:
    """The changes from `old` (None or empty: no schema yet) to `new`."""
    diff = SchemaDiff()
    before: Mapping[str, Any] = {f.key: f for f in old.fields} if old is not None else {}
    after = {f.key: f for f in new.fields}
    diff.added = [k for k in after if k not in before]
    diff.removed = [k for k in before if k not in after]
    for key in after:
        if key in before:
            if before[key].type != after[key].type:
                diff.retyped.append((key, before[key].type, after[key].type))
            elif (before[key].label or None) != (after[key].label or None):
                diff.relabelled.append(key)
    if old is not None and not old.is_empty and old.strict != new.strict:
        diff.strict_changed = (old.strict, new.strict)
    old_group = old.task_group_key if old is not None else None
    if old_group != new.task_group_key and old is not None and not old.is_empty:
        diff.task_group_moved = (old_group, new.task_group_key)
    return diff
