from __future__ import annotations

import pytest

from prolific_mcp.records import FIELD_TYPES, Schema, schema_problems


def _schema(**fields: object) -> dict[str, object]:
    return {"strict": True, "fields": fields}


def test_a_valid_schema_has_no_problems_and_round_trips() -> None:
    raw = _schema(prompt={"type": "text", "label": "Prompt"}, img={"type": "image_url"}, g={"type": "task_group_id"})
    assert schema_problems(raw) == []
    schema = Schema.from_dict(raw)
    assert schema.keys == ("prompt", "img", "g")
    assert schema.task_group_key == "g"
    assert schema.to_dict() == raw
    assert not schema.is_empty


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"strict": True, "fields": {f"f{i}": {"type": "text"} for i in range(201)}}, "at most 200 fields"),
        (_schema(**{"k" * 129: {"type": "text"}}), "1 to 128 characters"),
        (_schema(a={"type": "text", "label": "l" * 256}), "at most 255"),
        (_schema(a={"type": "sound"}), "unknown field type 'sound'"),
        ({"fields": {"a": {"type": "text"}}}, "'strict' is required"),
        ({"strict": "yes", "fields": {}}, "true or false"),
        ({"strict": True, "fields": []}, "'fields' must be an object"),
        (_schema(a={"type": "task_group_id"}, b={"type": "task_group_id"}), "at most one field"),
        (_schema(a="text"), "must be an object"),
        ("not a schema", "must be an object"),
    ],
)
def test_each_rule_is_reported_with_an_actionable_message(raw: object, needle: str) -> None:
    problems = schema_problems(raw)
    assert problems, raw
    assert any(needle in p.message for p in problems), [p.message for p in problems]
    with pytest.raises(ValueError, match=r"."):
        Schema.from_dict(raw)  # type: ignore[arg-type]


def test_limits_are_inclusive() -> None:
    raw = {"strict": False, "fields": {f"{'k' * 120}{i:03d}": {"type": "text", "label": "l" * 255} for i in range(200)}}
    assert schema_problems(raw) == []


def test_an_empty_field_set_counts_as_no_schema() -> None:
    assert Schema.from_dict({"strict": False, "fields": {}}).is_empty


def test_unknown_type_message_lists_every_known_type() -> None:
    (problem,) = schema_problems(_schema(a={"type": "number"}))
    assert problem.field == "a"
    for t in FIELD_TYPES:
        assert t in problem.message
