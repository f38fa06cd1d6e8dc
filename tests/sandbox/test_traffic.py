"""Imports step aside while the API serves a request (as at Prolific, where imports do not slow the API)."""

from __future__ import annotations

import threading

import httpx2

from prolific_mcp.sandbox import Sandbox
from prolific_mcp.sandbox.traffic import ApiTraffic

from .conftest import client
from .support import create_dataset, get_import, jsonl, put, record, upload_url, wait_for, wait_import


def test_an_import_waits_while_a_request_is_in_flight_then_completes(fresh: Sandbox) -> None:
    traffic = fresh.traffic
    traffic.max_pause = 3600.0  # the import waits for as long as the request below is in flight
    with client(fresh) as api:
        ds = create_dataset(api, fresh.workspace_id)
        issued = upload_url(api, ds["id"], "data.jsonl")
        wait_for(lambda: True if traffic.in_flight == 0 else None)  # every request so far has ended
        traffic.enter()  # a request being served (the fake S3's PUT is not one: it is not the API)
        try:
            assert put(issued["upload_url"], jsonl([record(i) for i in range(50)]), "application/x-ndjson").is_success
            wait_for(lambda: True if traffic.waiting == 1 else None)
            # Another request is served while the import waits; the import is still processing afterwards.
            assert get_import(api, ds["id"], issued["import_id"])["status"] == "processing"
            assert traffic.waiting == 1
        finally:
            traffic.leave()
        job = wait_import(api, ds["id"], issued["import_id"])
    assert job["status"] == "complete"
    assert job["accepted_count"] == 50
    assert traffic.pauses >= 1
    # A request ends on the sandbox's side just after its answer was sent.
    wait_for(lambda: True if traffic.in_flight == 0 else None)


def test_the_receiver_stops_reading_a_body_while_a_request_is_in_flight(fresh: Sandbox) -> None:
    traffic = fresh.traffic
    traffic.max_pause = 3600.0
    body = jsonl([record(i) for i in range(40_000)])  # several MB: many chunks
    with client(fresh) as api:
        ds = create_dataset(api, fresh.workspace_id)
        issued = upload_url(api, ds["id"], "data.jsonl")
        wait_for(lambda: True if traffic.in_flight == 0 else None)
        answers: list[httpx2.Response] = []
        traffic.enter()
        try:
            sender = threading.Thread(
                target=lambda: answers.append(put(issued["upload_url"], body, "application/x-ndjson"))
            )
            sender.start()
            wait_for(lambda: True if traffic.receiver_pauses >= 1 else None)
            # The API still answers while the body waits; the PUT has not ended.
            assert get_import(api, ds["id"], issued["import_id"])["status"] == "uninitialised"
            assert not answers
            (received,) = fresh.requests.for_server("s3")
            assert not received.finished
            assert received.body_size < len(body)
        finally:
            traffic.leave()
            sender.join(30)
        assert answers[0].status_code == 200
        assert wait_import(api, ds["id"], issued["import_id"])["accepted_count"] == 40_000


def test_step_aside_is_bounded_and_free_without_requests() -> None:
    traffic = ApiTraffic(max_pause=0.001)
    traffic.step_aside()
    assert traffic.pauses == 0  # nothing in flight: no pause at all
    traffic.enter()
    traffic.step_aside()  # a request that never ends: the worker goes on after max_pause
    assert traffic.pauses == 1
    assert traffic.waiting == 0
    traffic.leave()
    traffic.leave()  # an extra leave never makes the count negative
    assert traffic.in_flight == 0
