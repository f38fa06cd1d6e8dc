"""Dataset schema rules (docs/prolific-api.md, Models, and Schemas and migrations): one place for the limits both
the sandbox and the client enforce."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

FIELD_TYPES: Final = ("text", "image_url", "audio_url", "video_url", "metadata", "task_group_id")
"""The field types Prolific documents (the seed spec lists four; the guides and CLI add audio and video)."""

DISPLAYABLE_TYPES: Final = frozenset({"text", "image_url", "audio_url", "video_url"})
"""Types a batch's `dataset_field` item may reference."""

MAX_FIELDS: Final = 200
MAX_KEY_LENGTH: Final = 128
MAX_LABEL_LENGTH: Final = 255
MAX_APPEND_RECORDS: Final = 1000
"""The most records one append takes (Prolific's limit: docs/prolific-api.md, Appending records)."""


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """One reason a schema is invalid; `field` is the offending key, or None for the schema as a whole."""

    field: str | None
    message: str


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One schema field: its key, its type and an optional label."""

    key: str
    type: str
    label: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"type": self.type}
        if self.label is not None:
            out["label"] = self.label
        return out


def schema_problems(obj: object) -> list[SchemaProblem]:
    """Everything wrong with a DatasetSchema dict, in a stable order; [] when it is valid."""
    if not isinstance(obj, Mapping):
        return [SchemaProblem(None, 'the schema must be an object: {"strict": true|false, "fields": {...}}')]
    problems: list[SchemaProblem] = []
    strict = obj.get("strict")
    if "strict" not in obj:
        problems.append(SchemaProblem("strict", "'strict' is required: true rejects records missing a field"))
    elif not isinstance(strict, bool):
        problems.append(SchemaProblem("strict", "'strict' must be true or false"))
    fields = obj.get("fields")
    if not isinstance(fields, Mapping):
        problems.append(SchemaProblem("fields", "'fields' must be an object mapping each key to {type, label}"))
        return problems
    if len(fields) > MAX_FIELDS:
        problems.append(
            SchemaProblem("fields", f"a schema has at most {MAX_FIELDS} fields; this one has {len(fields)}")
        )
    group_keys: list[str] = []
    for key, spec in fields.items():
        shown = str(key)[:40]
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
            problems.append(SchemaProblem(shown, f"field keys are 1 to {MAX_KEY_LENGTH} characters; '{shown}…' is not"))
        if not isinstance(spec, Mapping):
            problems.append(SchemaProblem(shown, 'each field must be an object like {"type": "text"}'))
            continue
        ftype = spec.get("type")
        if ftype not in FIELD_TYPES:
            problems.append(
                SchemaProblem(shown, f"unknown field type {str(ftype)[:40]!r}; use one of: {', '.join(FIELD_TYPES)}")
            )
        elif ftype == "task_group_id":
            group_keys.append(str(key))
        label = spec.get("label")
        if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL_LENGTH):
            problems.append(SchemaProblem(shown, f"a label is a string of at most {MAX_LABEL_LENGTH} characters"))
    if len(group_keys) > 1:
        problems.append(
            SchemaProblem(
                "fields",
                f"at most one field may have type task_group_id; found {len(group_keys)}: {', '.join(group_keys)}",
            )
        )
    return problems


@dataclass(frozen=True, slots=True)
class Schema:
    """A validated DatasetSchema. A schema with no fields counts as no schema (docs/prolific-api.md, Where the docs
    are silent: 2)."""

    strict: bool
    fields: tuple[FieldSpec, ...]

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Schema:
        """Build from a dict that `schema_problems` accepted; raises ValueError otherwise."""
        problems = schema_problems(obj)
        if problems:
            raise ValueError("; ".join(p.message for p in problems))
        fields = tuple(
            FieldSpec(key=key, type=spec["type"], label=spec.get("label")) for key, spec in obj["fields"].items()
        )
        return cls(strict=bool(obj["strict"]), fields=fields)

    @property
    def is_empty(self) -> bool:
        return not self.fields

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)

    @property
    def task_group_key(self) -> str | None:
        return next((f.key for f in self.fields if f.type == "task_group_id"), None)

    def to_dict(self) -> dict[str, Any]:
        return {"strict": self.strict, "fields": {f.key: f.to_dict() for f in self.fields}}
