"""Per-record validation rules (API.md §12.4–5), shared by the sandbox's import and the client's pre-flight.

One error per rejected record: the first problem found, in schema field order. A missing required field gives
`field=None` and a reason naming the key, as in Prolific's documented example; every other problem names the
field. The limits that are our guess of Prolific's (text length, URL shapes) live in `RecordRules`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import orjson

from prolific_mcp.records.schema import Schema

MISSING_FIELD_REASON: Final = "Record missing required field: {key}"
RAW_FIELD: Final = "_raw"
"""The `field` value Prolific uses for a record that could not be parsed at all."""

AUDIO_EXTENSIONS: Final = (".aac", ".m4a", ".mp3", ".wav")
VIDEO_EXTENSIONS: Final = (".mp4", ".webm", ".mov")
IMAGE_EXTENSIONS: Final = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg", ".avif", ".tif", ".tiff")
"""Image extensions are not enforced (image URLs are often extension-less); suggest_schema uses them."""


@dataclass(frozen=True, slots=True)
class RecordRules:
    """The limits we apply where Prolific's docs are silent (API.md §12.4); exact in the sandbox."""

    max_text_length: int = 10_000
    audio_extensions: tuple[str, ...] = AUDIO_EXTENSIONS
    video_extensions: tuple[str, ...] = VIDEO_EXTENSIONS


Problem = tuple[str | None, str]
"""(field, reason) of a rejected record."""

_Check = Callable[[object], str | None]


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _text_check(rules: RecordRules) -> _Check:
    limit = rules.max_text_length

    def check(value: object) -> str | None:
        if type(value) is not str:
            return f"Expected text (a string), got {_type_name(value)}"
        if len(value) > limit:
            return f"Value exceeds maximum length of {limit:,} characters (got {len(value):,})"
        return None

    return check


_URL = re.compile(r"(?i:https?)://(?:[^/?#@]*@)?(\[[^\]/?#]*\]|[^/?#:\[\]]*)(?::(\d*))?([^?#]*)")
"""An absolute http(s) URL: group 1 the host, 2 the port, 3 the path (urlsplit is several times slower)."""


def url_path(value: str) -> str | None:
    """The path of an absolute http(s) URL with a host, else None."""
    match = _URL.match(value)
    if match is None or not match.group(1).strip("[]") or match.group(3)[:1] not in ("", "/"):
        return None
    return match.group(3)


def _url_problem(value: object) -> str | None:
    if type(value) is not str:
        return f"Expected a URL string, got {_type_name(value)}"
    if not value[:8].lower().startswith(("https://", "http://")):
        return "Invalid URL: must be an absolute http:// or https:// URL"
    if url_path(value) is None:
        return "Invalid URL: the URL has no host"
    return None


def _media_check(kind: str, extensions: tuple[str, ...]) -> _Check:
    shown = ", ".join(extensions[:-1]) + f" or {extensions[-1]}"

    def check(value: object) -> str | None:
        problem = _url_problem(value)
        if problem is not None:
            return problem
        assert isinstance(value, str)
        path = (url_path(value) or "").lower()
        if not path.endswith(extensions):
            return f"Invalid {kind} URL: the file must end in {shown}"
        return None

    return check


def _task_group_check(value: object) -> str | None:
    if type(value) is int:
        return None
    if type(value) is str and value.strip():
        return None
    return "A task_group_id value must be a non-empty string or an integer"


def _metadata_check(value: object) -> str | None:
    return None


def checker_for(field_type: str, rules: RecordRules) -> _Check:
    """The value check for one field type (an unknown type accepts any value: the live enum may grow)."""
    if field_type == "text":
        return _text_check(rules)
    if field_type == "image_url":
        return _url_problem
    if field_type == "audio_url":
        return _media_check("audio", rules.audio_extensions)
    if field_type == "video_url":
        return _media_check("video", rules.video_extensions)
    if field_type == "task_group_id":
        return _task_group_check
    return _metadata_check


class RecordValidator:
    """Validates and normalises records against one schema; built once per import, used per record."""

    __slots__ = ("_checks", "_strict", "schema")

    def __init__(self, schema: Schema, rules: RecordRules | None = None) -> None:
        rules = rules or RecordRules()
        self.schema = schema
        self._strict = schema.strict
        self._checks: tuple[tuple[str, _Check, str], ...] = tuple(
            (f.key, checker_for(f.type, rules), MISSING_FIELD_REASON.format(key=f.key)) for f in schema.fields
        )

    def check(self, record: Mapping[str, object]) -> tuple[dict[str, object] | None, Problem | None]:
        """(normalised record, None) when accepted, else (None, (field, reason)) for the first problem.

        The normalised record holds only schema keys, in schema order, without null or missing values.
        """
        out: dict[str, object] = {}
        strict = self._strict
        for key, check, missing_reason in self._checks:
            value = record.get(key)
            if value is None:
                if strict:
                    return None, (None, missing_reason)
                continue
            problem = check(value)
            if problem is not None:
                return None, (key, problem)
            out[key] = value
        return out, None


def missing_key_from_reason(reason: str) -> str | None:
    """The key named by a 'Record missing required field: <key>' reason, else None."""
    prefix = MISSING_FIELD_REASON.split("{", 1)[0]
    if reason.startswith(prefix):
        return reason[len(prefix) :].strip() or None
    return None


def record_digest(normalised: Mapping[str, object]) -> bytes:
    """A record's identity for duplicate detection (API.md §12.6): 16 bytes, independent of key order."""
    return hashlib.blake2b(orjson.dumps(normalised, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()
