"""The fault plan: each action, the Python API, a plan file, and the admin route."""

from __future__ import annotations

from pathlib import Path

import httpx2
import orjson
import pytest

from prolific_mcp.sandbox import FaultPlan, FaultPlanError, Sandbox
from prolific_mcp.sandbox.faults import parse_plan

from .conftest import client
from .support import (
    DATASETS,
    create_dataset,
    error_of,
    get_dataset,
    jsonl,
    put,
    record,
    upload_url,
    wait_for,
    wait_import,
    xml_code,
)

BODY = jsonl([record(1)])


def test_s3_status_fault_then_success(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    up = upload_url(api, ds["id"], "a.jsonl")
    rule = sbx.faults.add("PUT *", status=503, xml_code="SlowDown", times=2, retry_after=1)
    assert [r.match for r in sbx.faults.unused()] == ["PUT *"]
    for _ in range(2):
        response = put(up["upload_url"], BODY, up["content_type"])
        assert response.status_code == 503
        assert xml_code(response) == "SlowDown"
        assert response.headers["retry-after"] == "1"
    assert put(up["upload_url"], BODY, up["content_type"]).status_code == 200
    assert rule.hits == 2
    assert sbx.faults.unused() == []
    assert [r.status for r in sbx.requests.for_server("s3")] == [503, 503, 200]
    assert [r.fault for r in sbx.requests.for_server("s3")] == ["respond", "respond", None]
    assert wait_import(api, ds["id"], up["import_id"])["status"] == "complete"


def test_api_status_fault_uses_the_envelope(sbx: Sandbox, api: httpx2.Client) -> None:
    sbx.faults.add("GET /api/v1/workspaces/", status=429, retry_after="2", message="slow down please")
    response = api.get("/api/v1/workspaces/")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert error_of(response)["detail"] == "slow down please"
    assert api.get("/api/v1/workspaces/").status_code == 200


def test_server_filter_and_globs(sbx: Sandbox, api: httpx2.Client) -> None:
    sbx.faults.add("* *", status=500, server="s3", times=None)
    sbx.faults.add("GET /api/v1/data-collection/*/imports/*", status=502)
    ds = create_dataset(api, sbx.workspace_id)
    up = upload_url(api, ds["id"], "a.jsonl")
    assert put(up["upload_url"], BODY, up["content_type"]).status_code == 500
    assert put(up["upload_url"], BODY, up["content_type"]).status_code == 500
    assert api.get(f"{DATASETS}/{ds['id']}/imports/{up['import_id']}").status_code == 502
    assert api.get(f"{DATASETS}/{ds['id']}/imports/{up['import_id']}").status_code == 200
    assert [r.match for r in sbx.faults.unused()] == []
    sbx.faults.clear()
    assert put(up["upload_url"], BODY, up["content_type"]).status_code == 200


def test_unlimited_rule_is_unused_until_it_matches(sbx: Sandbox, api: httpx2.Client) -> None:
    sbx.faults.add("GET /nothing/here", status=500, times=None)
    assert len(sbx.faults.unused()) == 1


def test_custom_body(sbx: Sandbox, api: httpx2.Client) -> None:
    sbx.faults.add("GET /api/v1/users/me/", status=502, body="<html>bad gateway</html>", content_type="text/html")
    response = api.get("/api/v1/users/me/")
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert response.text == "<html>bad gateway</html>"


def test_drop_before(sbx: Sandbox, api: httpx2.Client) -> None:
    sbx.faults.add("GET /api/v1/users/me/", action="drop")
    with pytest.raises(httpx2.TransportError):
        api.get("/api/v1/users/me/")
    assert sbx.requests[-1].status is None
    assert sbx.requests[-1].fault == "drop"
    assert api.get("/api/v1/users/me/").status_code == 200


def test_drop_after_keeps_the_side_effect(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    sbx.faults.add("GET */upload-url/*", action="drop", when="after")
    with pytest.raises(httpx2.TransportError):
        api.get(f"{DATASETS}/{ds['id']}/upload-url/a.jsonl")
    imports = get_dataset(api, ds["id"])["imports"]
    assert [i["status"] for i in imports] == ["uninitialised"]


def test_status_after_keeps_the_side_effect(sbx: Sandbox, api: httpx2.Client) -> None:
    sbx.faults.add("POST /api/v1/data-collection/datasets", status=500, when="after")
    response = api.post(DATASETS, json={"name": "made anyway", "workspace_id": sbx.workspace_id})
    assert response.status_code == 500
    assert error_of(response)["status"] == 500


def test_drop_mid_body(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    up = upload_url(api, ds["id"], "big.jsonl")
    body = jsonl([record(i) for i in range(5000)])
    sbx.faults.add("PUT *", action="drop", after_bytes=65536)
    with pytest.raises(httpx2.TransportError):
        put(up["upload_url"], body, up["content_type"])
    dropped = sbx.requests.for_server("s3")[-1]
    assert 65536 <= dropped.body_size < len(body)
    assert dropped.status is None
    wait_for(lambda: True if dropped.finished else None)
    assert not (sbx.state_dir / "objects" / f"{up['import_id']}.bin").exists()
    assert put(up["upload_url"], body, up["content_type"]).status_code == 200


def test_stall_trips_client_timeouts(sbx: Sandbox, api: httpx2.Client) -> None:
    sbx.faults.add("GET /api/v1/users/me/", action="stall", seconds=1)
    with (
        httpx2.Client(base_url=sbx.url, headers={"Authorization": "Token t"}, timeout=0.2) as impatient,
        pytest.raises(httpx2.ReadTimeout),
    ):
        impatient.get("/api/v1/users/me/")
    stalled = sbx.requests[-1]
    wait_for(lambda: True if stalled.finished else None, timeout=10)
    assert stalled.status is None
    assert api.get("/api/v1/users/me/").status_code == 200


def test_latency_then_normal(sbx: Sandbox, api: httpx2.Client) -> None:
    sbx.faults.add("GET /api/v1/users/me/", latency=0.2)
    assert api.get("/api/v1/users/me/").status_code == 200
    assert sbx.requests[-1].fault == "pass"
    assert sbx.faults.unused() == []


def test_redirects(sbx: Sandbox, api: httpx2.Client) -> None:
    sbx.faults.add("GET /api/v1/users/me/", location="http://127.0.0.1:1/x")
    response = api.get("/api/v1/users/me/")
    assert response.status_code == 302
    assert response.headers["location"] == "http://127.0.0.1:1/x"
    ds = create_dataset(api, sbx.workspace_id)
    up = upload_url(api, ds["id"], "a.jsonl")
    sbx.faults.add("PUT *", action="redirect", location="http://127.0.0.1:1/y")
    moved = put(up["upload_url"], BODY, up["content_type"])
    assert moved.status_code == 307
    assert moved.headers["location"] == "http://127.0.0.1:1/y"


def test_admin_routes_are_not_faulted_or_logged(sbx: Sandbox) -> None:
    sbx.faults.add("*", status=500, times=None)
    with httpx2.Client(base_url=sbx.url, headers={"Authorization": f"Bearer {sbx.admin_token}"}) as admin:
        assert admin.get("/_sandbox/faults").status_code == 200
    assert sbx.requests == []


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ({"status": 500}, "match"),
        ({"match": "PUT"}, "METHOD glob"),
        ({"match": "FETCH /x", "status": 500}, "unknown method"),
        ({"match": "GET x", "status": 500}, "start with '/'"),
        ({"match": "GET /x"}, "say what to do"),
        ({"match": "GET /x", "action": "respond"}, "needs a 'status'"),
        ({"match": "GET /x", "action": "stall"}, "'seconds'"),
        ({"match": "GET /x", "action": "redirect"}, "'location'"),
        ({"match": "GET /x", "action": "explode"}, "unknown action"),
        ({"match": "GET /x", "status": 500, "times": 0}, "'times'"),
        ({"match": "GET /x", "status": 500, "server": "db"}, "'server'"),
        ({"match": "GET /x", "status": "500"}, "'status' must be int"),
        ({"match": "GET /x", "status": 500, "colour": "red"}, "unknown key"),
        ({"match": "GET /x", "action": "stall", "seconds": 1, "after_bytes": 3}, "'after_bytes'"),
    ],
)
def test_plan_validation(rule: dict[str, object], needle: str) -> None:
    with pytest.raises(FaultPlanError, match=needle):
        parse_plan({"faults": [rule]})


def test_plan_shapes() -> None:
    rules = parse_plan(
        [
            {"match": "PUT *", "times": 2, "status": 503, "xml_code": "SlowDown", "retry_after": 1},
            {"match": "GET /api/v1/workspaces/", "action": "drop"},
            {"match": "GET /x", "latency": 0.5},
            {"match": "GET /y", "action": "stall", "seconds": 2},
            {"match": "GET /z", "action": "redirect", "location": "http://127.0.0.1:1/x"},
        ]
    )
    assert [r.action for r in rules] == ["respond", "drop", "pass", "stall", "redirect"]
    assert rules[0].to_dict()["retry_after"] == "1"
    assert parse_plan({"faults": [r.to_dict() | {"hits": None} for r in rules][:0]}) == []
    with pytest.raises(FaultPlanError, match="unknown key"):
        parse_plan({"faults": [], "extra": 1})
    with pytest.raises(FaultPlanError):
        parse_plan("nope")


def test_plan_from_file(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_bytes(orjson.dumps({"faults": [{"match": "GET /api/v1/users/me/", "status": 503, "times": 1}]}))
    with Sandbox.start(state_dir=tmp_path / "s", pace="fast", faults=plan) as sandbox, client(sandbox) as api:
        assert len(sandbox.faults.unused()) == 1
        assert api.get("/api/v1/users/me/").status_code == 503
        assert api.get("/api/v1/users/me/").status_code == 200
        assert sandbox.faults.unused() == []
    with Sandbox.start(pace="fast", faults={"faults": [{"match": "* *", "status": 500}]}) as sandbox:
        assert len(sandbox.faults) == 1
    shared = FaultPlan()
    with Sandbox.start(pace="fast", faults=shared) as sandbox:
        assert sandbox.faults is shared


def test_admin_route(sbx: Sandbox, api: httpx2.Client) -> None:
    url = "/_sandbox/faults"
    with httpx2.Client(base_url=sbx.url, timeout=10) as anonymous:
        assert anonymous.get(url).status_code == 401
        wrong = anonymous.get(url, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert "admin token" in error_of(wrong)["detail"]
        # The API token is not the admin token.
        assert anonymous.get(url, headers={"Authorization": "Token test-token"}).status_code == 401
    with httpx2.Client(base_url=sbx.url, headers={"Authorization": f"Bearer {sbx.admin_token}"}, timeout=10) as admin:
        added = admin.post(url, json={"faults": [{"match": "GET /api/v1/users/me/", "status": 503, "times": 2}]})
        assert added.status_code == 201
        assert added.json()["added"][0]["remaining"] == 2
        listed = admin.get(url).json()
        assert [f["match"] for f in listed["unused"]] == ["GET /api/v1/users/me/"]
        assert api.get("/api/v1/users/me/").status_code == 503
        assert admin.get(url).json()["unused"][0]["remaining"] == 1
        replaced = admin.put(url, json={"faults": [{"match": "GET /api/v1/workspaces/", "action": "drop"}]})
        assert replaced.status_code == 200
        assert [f["match"] for f in admin.get(url).json()["faults"]] == ["GET /api/v1/workspaces/"]
        invalid = admin.post(url, json={"faults": [{"match": "nope"}]})
        assert invalid.status_code == 400
        assert "METHOD glob" in error_of(invalid)["detail"]
        assert admin.delete(url).json() == {"cleared": 1}
        assert sbx.faults.rules() == []
        requests = admin.get("/_sandbox/requests").json()["requests"]
        assert requests[-1]["path"] == "/api/v1/users/me/"
        assert requests[-1]["status"] == 503
        assert admin.delete("/_sandbox/requests").json()["cleared"] == len(requests)
        assert sbx.requests == []
        before = sbx.clock.now()
        moved = admin.post("/_sandbox/clock", json={"advance": 3600}).json()
        assert moved["offset"] == pytest.approx(3600)
        assert sbx.clock.now() >= before + 3600
        assert admin.post("/_sandbox/clock", json={"advance": "soon"}).status_code == 400
        info = admin.get("/_sandbox/info").json()
        assert (info["url"], info["s3_url"], info["workspace_id"]) == (sbx.url, sbx.s3_url, sbx.workspace_id)
        ws = admin.post("/_sandbox/workspaces", json={"title": "From admin"})
        assert ws.status_code == 201
        ds = create_dataset(api, sbx.workspace_id, name="batched")
        batch = admin.post("/_sandbox/batches", json={"dataset_id": ds["id"], "name": "B", "status": "READY"}).json()
        assert batch["datasets"][0]["id"] == ds["id"]
        assert batch["workspace_id"] == sbx.workspace_id
        listed_batches = api.get("/api/v1/data-collection/batches", params={"workspace_id": sbx.workspace_id}).json()
        assert batch["id"] in [b["id"] for b in listed_batches["results"]]
