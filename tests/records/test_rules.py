from __future__ import annotations

import pytest

from prolific_mcp.records import (
    RecordRules,
    RecordValidator,
    Schema,
    missing_key_from_reason,
    record_digest,
)

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
