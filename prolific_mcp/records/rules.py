"""Per-record validation rules (docs/prolific-api.md, Where the docs are silent: 5), shared by the sandbox's
import and the client's pre-flight.

One error per rejected record: the first problem found, in schema field order. A missing required field gives
`field=None` and a reason naming the key, as in Prolific's documented example; every other problem names the
field. The limits that are our guess of Prolific's (text length, URL shapes) live in `RecordRules`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, cast

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
    """The limits we apply where Prolific's docs are silent (docs/prolific-api.md, Where the docs are silent: 5);
    exact in the sandbox."""

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


_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:[/?#]|\Z)")
"""A subset of what `_url_problem` accepts (lower-case scheme, a plain host, an optional port, then a path, a
query, a fragment or nothing): a match is certainly a valid URL; no match proves nothing."""

_ACCEPT: Final = {
    "text": "type({v}) is str and len({v}) <= limit",
    "image_url": "type({v}) is str and plain_url({v}) is not None",
    "task_group_id": "type({v}) is int or (type({v}) is str and {v}.strip())",
}
"""Per field type, an expression true only for values its check accepts: the common values are accepted
without a call, and every other value goes through the check, which alone decides and words the problem."""

_Problems = Callable[[Mapping[str, object]], Problem | None]
_Normaliser = Callable[[Mapping[str, object]], tuple[dict[str, object] | None, Problem | None]]


@functools.lru_cache(maxsize=32)
def _compiled(schema: Schema, rules: RecordRules) -> tuple[_Problems, _Normaliser]:
    """Two functions specialised to one schema: `problem(record)` and `check(record)` (see RecordValidator).

    The per-record work is the hot loop of the pre-flight scan and of the sandbox's import, so the field loop is
    unrolled into straight-line code. The source is built from fixed templates and generated names only (`k0`,
    `c0`...): the schema's keys, checks and reasons are bound as values in the namespace, never written into it.
    """
    namespace: dict[str, object] = {"limit": rules.max_text_length, "plain_url": _PLAIN_URL.match}
    problem = ["def problem(record):", "    get = record.get"]
    check = ["def check(record):", "    get = record.get"]
    for i, f in enumerate(schema.fields):
        k, v, c, m = f"k{i}", f"v{i}", f"c{i}", f"m{i}"
        namespace[k] = f.key
        namespace[m] = (None, MISSING_FIELD_REASON.format(key=f.key))
        checker = checker_for(f.type, rules)
        namespace[c] = checker
        for lines, rejected in ((problem, "{}"), (check, "None, {}")):
            if checker is _metadata_check and not schema.strict and lines is problem:
                continue  # any value is accepted, and none is required
            lines.append(f"    {v} = get({k})")
            if schema.strict:
                lines += [f"    if {v} is None:", f"        return {rejected.format(m)}"]
            if checker is _metadata_check:
                continue
            accept = _ACCEPT.get(f.type)
            tests = [] if schema.strict else [f"{v} is not None"]
            if accept is not None:
                tests.append(f"not ({accept.format(v=v)})")
            indent = "        " if tests else "    "
            if tests:
                lines.append(f"    if {' and '.join(tests)}:")
            lines += [
                f"{indent}p = {c}({v})",
                f"{indent}if p is not None:",
                f"{indent}    return {rejected.format(f'({k}, p)')}",
            ]
    problem.append("    return None")
    if schema.strict:
        check.append("    return {" + ", ".join(f"k{i}: v{i}" for i in range(len(schema.fields))) + "}, None")
    else:
        check.append("    out = {}")
        for i in range(len(schema.fields)):
            check += [f"    if v{i} is not None:", f"        out[k{i}] = v{i}"]
        check.append("    return out, None")
    source = "\n".join(problem) + "\n\n\n" + "\n".join(check) + "\n"
    exec(compile(source, f"<record rules: {len(schema.fields)} fields>", "exec"), namespace)  # noqa: S102 (above)
    return cast(_Problems, namespace["problem"]), cast(_Normaliser, namespace["check"])


class RecordValidator:
    """Validates and normalises records against one schema; built once per import, used per record.

    One error per record: the first problem in schema field order (see the module's docstring).
    """

    __slots__ = ("check", "problem", "schema")

    check: _Normaliser
    """`check(record)`: (normalised record, None) when accepted, else (None, (field, reason)) for the first problem.

    The normalised record holds only schema keys, in schema order, without null or missing values."""
    problem: _Problems
    """`problem(record)`: the first problem of a record in schema field order, or None when it is accepted."""

    def __init__(self, schema: Schema, rules: RecordRules | None = None) -> None:
        self.schema = schema
        self.problem, self.check = _compiled(schema, rules or RecordRules())


_STRING_TYPES: Final = frozenset({"text", "image_url", "audio_url", "video_url"})


def exact_keys_of(schema: Schema) -> tuple[str, ...]:
    """The keys whose values may be numbers that matter (every type but text and URLs, which refuse any number):
    `iter_records(..., exact_keys=...)` keeps integers beyond 64 bits exact in them."""
    return tuple(f.key for f in schema.fields if f.type not in _STRING_TYPES)


def checked_exact_keys_of(schema: Schema) -> tuple[str, ...]:
    """The keys whose check tells an integer beyond 64 bits from the float orjson makes of it (task_group_id
    accepts an integer, refuses a float): all a pass that only checks records needs exact (the pre-flight scan).
    A metadata value passes whatever its numbers, so only a pass that keeps the values needs `exact_keys_of`."""
    return tuple(f.key for f in schema.fields if f.type == "task_group_id")


def missing_key_from_reason(reason: str) -> str | None:
    """The key named by a 'Record missing required field: <key>' reason, else None."""
    prefix = MISSING_FIELD_REASON.split("{", 1)[0]
    if reason.startswith(prefix):
        return reason[len(prefix) :].strip() or None
    return None


def canonical_bytes(normalised: Mapping[str, object]) -> bytes:
    """A normalised record as compact JSON with sorted keys; integers beyond 64 bits (which orjson refuses) are
    written exactly by the standard library's encoder."""
    try:
        return orjson.dumps(normalised, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_digest(normalised: Mapping[str, object]) -> bytes:
    """A record's identity for duplicate detection (docs/prolific-api.md, Duplicates): 16 bytes, independent of
    key order; records that differ only in an integer beyond 64 bits differ."""
    return hashlib.blake2b(canonical_bytes(normalised), digest_size=16).digest()
