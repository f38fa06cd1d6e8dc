from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prolific_mcp.records import (
    MISSING_FIELD_REASON,
    FieldSpec,
    RecordRules,
    RecordValidator,
    Schema,
    missing_key_from_reason,
    record_digest,
)
from prolific_mcp.records.rules import _PLAIN_URL, checker_for

SCHEMA = Schema.from_dict(
    {
        "strict": True,
        "fields": {
            "prompt": {"type": "text"},
            "image": {"type": "image_url"},
            "clip": {"type": "audio_url"},
            "movie": {"type": "video_url"},
            "group": {"type": "task_group_id"},
            "meta": {"type": "metadata"},
        },
    }
)
GOOD = {
    "prompt": "hello",
    "image": "https://cdn.example/x.png",
    "clip": "https://cdn.example/a.MP3",
    "movie": "http://cdn.example/v.webm?x=1",
    "group": 7,
    "meta": {"any": ["thing"]},
}


def test_a_good_record_is_normalised_to_schema_keys_in_order() -> None:
    record, problem = RecordValidator(SCHEMA).check({**GOOD, "extra": "dropped"})
    assert problem is None
    assert record == GOOD
    assert list(record) == list(SCHEMA.keys)


@pytest.mark.parametrize(
    ("change", "field", "needle"),
    [
        ({"prompt": "p" * 10_001}, "prompt", "exceeds maximum length of 10,000"),
        ({"prompt": 12}, "prompt", "got a number"),
        ({"prompt": True}, "prompt", "got a boolean"),
        ({"image": "ftp://cdn.example/x.png"}, "image", "http:// or https://"),
        ({"image": "https://"}, "image", "no host"),
        ({"image": "/relative.png"}, "image", "absolute"),
        ({"clip": "https://cdn.example/a.ogg"}, "clip", ".aac, .m4a, .mp3 or .wav"),
        ({"movie": "https://cdn.example/v.avi"}, "movie", ".mp4, .webm or .mov"),
        ({"group": ""}, "group", "non-empty string or an integer"),
        ({"group": True}, "group", "non-empty string or an integer"),
        ({"group": 1.5}, "group", "non-empty string or an integer"),
    ],
)
def test_each_value_rule_names_the_field(change: dict[str, object], field: str, needle: str) -> None:
    record, problem = RecordValidator(SCHEMA).check({**GOOD, **change})
    assert record is None
    assert problem is not None
    assert problem[0] == field
    assert needle in problem[1]


def test_text_at_the_limit_is_accepted() -> None:
    record, problem = RecordValidator(SCHEMA).check({**GOOD, "prompt": "p" * 10_000})
    assert problem is None and record is not None


def test_missing_and_null_are_the_same_and_give_the_documented_reason() -> None:
    for record in ({k: v for k, v in GOOD.items() if k != "image"}, {**GOOD, "image": None}):
        _, problem = RecordValidator(SCHEMA).check(record)
        assert problem == (None, "Record missing required field: image")
        assert missing_key_from_reason(problem[1]) == "image"


def test_the_first_problem_in_schema_order_wins() -> None:
    _, problem = RecordValidator(SCHEMA).check({**GOOD, "movie": "bad", "prompt": None})
    assert problem == (None, "Record missing required field: prompt")


def test_non_strict_schema_allows_missing_fields_but_still_checks_present_ones() -> None:
    loose = Schema.from_dict({**SCHEMA.to_dict(), "strict": False})
    record, problem = RecordValidator(loose).check({"prompt": "only this"})
    assert problem is None and record == {"prompt": "only this"}
    _, problem = RecordValidator(loose).check({"image": "nope"})
    assert problem is not None and problem[0] == "image"


def test_rules_are_configurable() -> None:
    short = RecordValidator(SCHEMA, RecordRules(max_text_length=3))
    _, problem = short.check({**GOOD, "prompt": "four"})
    assert problem is not None and "maximum length of 3" in problem[1]


def test_unknown_field_types_accept_any_value() -> None:
    future = Schema(strict=True, fields=(*SCHEMA.fields[:0], type(SCHEMA.fields[0])("x", "rating")))
    record, problem = RecordValidator(future).check({"x": 5})
    assert problem is None and record == {"x": 5}


def test_digest_ignores_key_order_and_tells_records_apart() -> None:
    assert record_digest({"a": 1, "b": "x"}) == record_digest({"b": "x", "a": 1})
    assert record_digest({"a": 1}) != record_digest({"a": "1"})
    assert len(record_digest({})) == 16
    assert missing_key_from_reason("Value too long") is None


# --- the compiled validator against the per-field rules -----------------------------------------------------------

TYPES = ["text", "image_url", "audio_url", "video_url", "metadata", "task_group_id", "rating"]
"""Every documented type, and one the live enum may add (any value accepted)."""

URLS = [
    "https://cdn.example/x.png",
    "http://cdn.example",
    "https://cdn.example:8080/a.mp4",
    "https://cdn.example?x=1",
    "https://cdn.example#frag",
    "HTTPS://CDN.EXAMPLE/A.MP3",
    "https://user@cdn.example/a.wav",
    "https://[::1]/v.webm",
    "https://cdn.example:80abc",
    "https://",
    "https:///path.png",
    "ftp://cdn.example/x.png",
    "https://cdn.example/x.mov?y=1",
    "https://cdn_example.com/x.png",
    "https://cdn.example\\x.png",
    "//cdn.example/x.png",
    " https://cdn.example/x.png",
]
VALUES = st.one_of(
    st.none(),
    st.sampled_from(URLS),
    st.text(max_size=12),
    st.sampled_from(["", " ", "\t", "x" * 11]),
    st.integers(-3, 3),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
KEYS = st.sampled_from(["a", "b", "c", "d", "quote\"'", "new\nline", "{k0}", "get"])


def reference(schema: Schema, rules: RecordRules, record: dict[str, object]) -> tuple[object, object]:
    """The rules as written: each field in schema order, its type's check, the first problem wins."""
    out: dict[str, object] = {}
    for field in schema.fields:
        value = record.get(field.key)
        if value is None:
            if schema.strict:
                return None, (None, MISSING_FIELD_REASON.format(key=field.key))
            continue
        problem = checker_for(field.type, rules)(value)
        if problem is not None:
            return None, (field.key, problem)
        out[field.key] = value
    return out, None


@given(
    fields=st.dictionaries(KEYS, st.sampled_from(TYPES), max_size=6),
    strict=st.booleans(),
    limit=st.integers(0, 12),
    record=st.dictionaries(KEYS | st.text(max_size=3), VALUES, max_size=8),
)
def test_the_compiled_validator_agrees_with_the_per_field_rules(
    fields: dict[str, str], strict: bool, limit: int, record: dict[str, object]
) -> None:
    schema = Schema(strict=strict, fields=tuple(FieldSpec(k, t) for k, t in fields.items()))
    rules = RecordRules(max_text_length=limit)
    validator = RecordValidator(schema, rules)
    expected = reference(schema, rules, record)
    got = validator.check(record)
    assert got == expected
    assert got[0] is None or list(got[0]) == [k for k in schema.keys if k in got[0]]  # type: ignore[union-attr]
    assert validator.problem(record) == expected[1]


@given(st.sampled_from(URLS) | st.from_regex(r"https?://[A-Za-z0-9.:/?#@\[\]_-]{0,20}", fullmatch=True))
def test_a_url_the_fast_path_accepts_is_one_the_rules_accept(url: str) -> None:
    if _PLAIN_URL.match(url) is not None:
        assert checker_for("image_url", RecordRules())(url) is None


def test_many_fields_and_awkward_keys_compile() -> None:
    keys = [f"field {i} 'x\"\n" for i in range(200)]
    schema = Schema(strict=True, fields=tuple(FieldSpec(k, "text") for k in keys))
    record: dict[str, object] = dict.fromkeys(keys, "v")
    assert RecordValidator(schema).check(record) == (record, None)
    record[keys[150]] = 5
    assert RecordValidator(schema).problem(record) == (keys[150], "Expected text (a string), got a number")
