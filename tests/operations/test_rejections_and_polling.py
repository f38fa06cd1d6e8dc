"""The one rejection grouping and its limits, and the one polling loop (`poll_until`)."""

from __future__ import annotations

import pytest

from prolific_mcp.api.errors import ApiUnreachableError, NotFoundError, RateLimitedError, Resource
from prolific_mcp.operations import render
from prolific_mcp.uploads.groups import (
    MAX_GROUPS,
    MAX_RECORD_NUMBERS,
    NOT_ITEMISED,
    OTHER,
    ErrorItem,
    Grouper,
    group_errors,
)
from prolific_mcp.uploads.polling import PollPlanner, poll_until
from prolific_mcp.uploads.rejections import MAX_TEXT
from tests.operations.conftest import Clock

pytestmark = pytest.mark.anyio


def test_grouping_keeps_every_limit_and_every_count() -> None:
    errors = [ErrorItem(i, f"field{i % 120}", "bad value") for i in range(5000)]
    groups = group_errors(errors, 7000)
    assert len(groups) == MAX_GROUPS
    assert all(len(g.record_indexes) <= MAX_RECORD_NUMBERS for g in groups)
    assert sum(g.count for g in groups) == 7000
    assert {g.reason for g in groups} >= {OTHER, NOT_ITEMISED}
    outcome = render.ImportOutcome(DS_ID, "imp", "f.jsonl", "partial", accepted=1, rejected=7000, groups=groups)
    assert len(render.import_summary(outcome)) <= MAX_TEXT
    infos = render.group_infos(groups)
    assert all(len(i.records) <= MAX_RECORD_NUMBERS for i in infos)


DS_ID = "0192a3b5-e8f9-7a0b-1c2d-3e4f5a6b7c8d"


def test_the_scan_and_the_api_group_the_same_way() -> None:
    grouper = Grouper()
    for index in (4, 1, 9):
        grouper.add("text", "too long", index, line=index + 1)
    grouper.add("_raw", "Malformed JSON", 2, line=3)
    grouper.add("text", "too long", 4, line=5)  # the same record again is counted once
    groups = grouper.groups()
    assert [(g.field, g.count, g.records, g.lines) for g in groups] == [
        ("text", 3, [5, 2, 10], [5, 2, 10]),
        ("_raw", 1, [3], [3]),
    ]
    api = group_errors([ErrorItem(4, "text", "too long"), ErrorItem(1, "text", "too long")], 3)
    assert [(g.key, g.count) for g in api] == [("text", 2), (None, 1)]


async def test_poll_until_tolerates_transient_errors_then_gives_up() -> None:
    clock = Clock()
    seen: list[int] = []
    answers: list[int | Exception] = [1, ApiUnreachableError("reset"), 2, 3]

    async def fetch() -> int:
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def on_each(value: int) -> None:
        seen.append(value)

    value = await poll_until(
        fetch, lambda v: v == 3, deadline=clock.now + 60, planner=PollPlanner(), on_each=on_each,
        clock=clock.time, sleep=clock.sleep,
    )  # fmt: skip
    assert value == 3 and seen == [1, 2, 3]

    async def always_failing() -> int:
        raise ApiUnreachableError("reset")

    with pytest.raises(ApiUnreachableError):
        await poll_until(
            always_failing, bool, deadline=clock.now + 600, planner=PollPlanner(), clock=clock.time,
            sleep=clock.sleep, errors_in_a_row=3,
        )  # fmt: skip


async def test_poll_until_honours_retry_after_only_within_the_deadline() -> None:
    clock = Clock()
    answers: list[int | Exception] = [1, RateLimitedError.after(30)]

    async def fetch() -> int:
        item = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(item, Exception):
            raise item
        return item

    value = await poll_until(
        fetch, lambda v: v == 2, deadline=clock.now + 10, planner=PollPlanner(), clock=clock.time, sleep=clock.sleep
    )
    assert value == 1 and all(s < 30 for s in clock.sleeps)  # what is known, without sleeping past the deadline


async def test_poll_until_raises_what_is_not_transient_at_once() -> None:
    clock = Clock()

    async def fetch() -> int:
        raise NotFoundError("gone", resource=Resource("import", "i", "d"))

    with pytest.raises(NotFoundError):
        await poll_until(
            fetch, bool, deadline=clock.now + 60, planner=PollPlanner(), clock=clock.time, sleep=clock.sleep
        )
    assert clock.sleeps == []


def test_the_advice_that_names_tools_is_added_to_the_api_facts() -> None:
    from prolific_mcp.api.errors import AmbiguousUploadUrlError, UploadFailedError, error_for_status

    missing = error_for_status(404, b"", resource=Resource("dataset", "ds-1"))
    assert str(missing) == "the dataset ds-1 was not found"
    assert render.error_text(missing) == "the dataset ds-1 was not found: check the id or call list_datasets"
    unknown = AmbiguousUploadUrlError("ds-1", "a.jsonl", "reset", None)
    assert render.error_text(unknown).endswith(
        "Request a new upload URL (call upload_file again); get_dataset lists the imports"
    )
    sent = UploadFailedError("the outcome is unknown", import_id="imp-1")
    assert render.error_text(sent) == 'the outcome is unknown (get_import_status(import_id="imp-1") shows it)'
    for error in (missing, unknown, sent):
        assert not any(tool in str(error) for tool in ("list_datasets", "get_dataset", "upload_file", "get_import"))


async def test_a_wait_shorter_than_the_schedule_is_used_whole_with_a_last_request_at_its_end() -> None:
    """wait_seconds=2 on a schedule whose first step is 3 s: the call waits the 2 s it was given, asks once more at
    the end, and returns what it saw then (not at once, and not after 3 s)."""
    clock = Clock()
    answers = ["queued", "processing", "complete"]
    start = clock.now

    async def fetch() -> str:
        return answers.pop(0)

    value = await poll_until(
        fetch, lambda v: v == "complete", deadline=clock.now + 2, planner=PollPlanner(), clock=clock.time,
        sleep=clock.sleep,
    )  # fmt: skip
    assert value == "processing" and clock.sleeps == [2.0] and clock.now - start == 2.0
    assert answers == ["complete"], "two requests: at the start and at the end of the wait"
    nothing_left = await poll_until(
        fetch, lambda v: False, deadline=clock.now + 0.1, planner=PollPlanner(), clock=clock.time, sleep=clock.sleep
    )
    assert nothing_left == "complete" and clock.sleeps == [2.0], "too little left for another request: none made"
