"""The outside contract check of a running sandbox (kept outside this repository), ported: the same flow, in order, at
the default pace."""

from __future__ import annotations

import orjson

from prolific_mcp.sandbox import Sandbox

from .conftest import client
from .support import (
    DATASETS,
    SCHEMA,
    contract_csv,
    create_dataset,
    get_dataset,
    get_import,
    put,
    upload_url,
    wait_for,
    watch_import,
)

NDJSON = {"Content-Type": "application/x-ndjson"}


def test_contract_flow(paced: Sandbox) -> None:
    with client(paced, "contract-check") as api:
        ws = api.get("/api/v1/workspaces/")
        assert ws.status_code == 200
        assert ws.json()["results"]
        wid = ws.json()["results"][0]["id"]
        assert api.get("/api/v1/users/me/").status_code == 200
        assert api.get("/api/v1/workspaces/", headers={"Authorization": "Bearer nope"}).status_code in (401, 403)

        ds = create_dataset(api, wid, name="contract csv")
        assert str(ds["schema_version"]) == "4"
        for bad in (
            {"strict": True, "fields": {f"f{i}": {"type": "text"} for i in range(201)}},
            {"strict": True, "fields": {"k" * 129: {"type": "text"}}},
            {"strict": True, "fields": {"a": {"type": "text", "label": "l" * 256}}},
            {"strict": True, "fields": {"a": {"type": "sound"}}},
            {"fields": {"a": {"type": "text"}}},
        ):
            response = api.post(DATASETS, json={"name": "bad", "workspace_id": wid, "schema": bad})
            assert response.status_code == 400
            assert isinstance(response.json()["error"], dict)

        up = upload_url(api, ds["id"], "prompts.csv")
        assert all(up.get(k) for k in ("upload_url", "import_id", "http_method"))
        assert up["content_type"].startswith("text/csv")
        assert "X-Amz-Expires=" in up["upload_url"]
        assert "X-Amz-Signature=" in up["upload_url"]
        body = contract_csv()
        assert put(up["upload_url"], body, up["content_type"], Authorization="Token contract-check").status_code == 400
        assert put(up["upload_url"], body, up["content_type"]).status_code == 200
        job, seen = watch_import(api, ds["id"], up["import_id"])
        assert job["status"] == "partial"
        assert "processing" in seen
        assert (job["accepted_count"], job["rejected_count"]) == (36, 4)
        errs = {e["record_index"]: e for e in job["errors"]}
        assert sorted(errs) == [4, 11, 19, 32]
        assert [(i, errs[i]["field"]) for i in (4, 19, 32)] == [(4, "prompt"), (19, "image"), (32, "image")]
        assert errs[11]["field"] is None
        assert "response" in errs[11]["reason"]

        a = upload_url(api, ds["id"], "a.csv")
        b = upload_url(api, ds["id"], "b.csv")
        put(a["upload_url"], body, a["content_type"])
        put(b["upload_url"], body, b["content_type"])
        assert get_import(api, ds["id"], b["import_id"])["status"] == "queued"
        first, _ = watch_import(api, ds["id"], a["import_id"])
        second, _ = watch_import(api, ds["id"], b["import_id"])
        assert first["status"] == second["status"] == "partial"
        view = get_dataset(api, ds["id"])
        assert view["total_datapoint_count"] == 36
        assert len(view["imports"]) == 3
        assert view["imports"][0]["import_id"] == b["import_id"]
        assert second["duplicate_count"] == 36

        # The version is the workspace's: no schema in the default (typed) workspace is V4 with schema null; the
        # first other workspace that gives V3 is the one without typed datasets, and it refuses a schema.
        d4 = create_dataset(api, wid, schema=None, name="contract no schema")
        assert (str(d4["schema_version"]), d4["schema"]) == ("4", None)
        untyped = None
        for w in ws.json()["results"][1:]:
            probe = create_dataset(api, w["id"], schema=None, name="contract probe")
            if str(probe["schema_version"]) == "3":
                untyped = w["id"]
                break
        assert untyped == paced.legacy_workspace_id
        refused = api.post(DATASETS, json={"name": "contract typed", "workspace_id": untyped, "schema": SCHEMA})
        assert refused.status_code == 400 and "error" in refused.json()

        v3_body = b"id,text,META_source,META_TASK_GROUP_ID\n1,hello,web,g1\n2,world,web,g1\n3,again,app,g2\n"
        d3 = create_dataset(api, untyped, schema=None, name="contract v3")
        assert (str(d3["schema_version"]), d3["status"]) == ("3", "UNINITIALISED")
        u3 = upload_url(api, d3["id"], "v3.csv")
        put(u3["upload_url"], v3_body, u3["content_type"])
        status = wait_for(
            lambda: (
                s if (s := api.get(f"{DATASETS}/{d3['id']}/status").json()["status"]) in ("READY", "ERROR") else None
            )
        )
        assert status == "READY"
        v3_view = get_dataset(api, d3["id"])
        assert v3_view["total_datapoint_count"] == 3
        assert v3_view["has_predetermined_grouping_id"] is True
        assert not v3_view["imports"]
        assert api.patch(f"{DATASETS}/{d3['id']}", json={"schema": SCHEMA}).status_code == 400

        def lines(prefix: str, n: int) -> bytes:
            return b"\n".join(
                orjson.dumps(
                    {"prompt": f"{prefix}{i}", "response": "y", "image": "https://a.example/i.png", "batch": "b9"}
                )
                for i in range(n)
            )

        appended = api.post(f"{DATASETS}/{ds['id']}/datapoints", content=lines("x", 3), headers=NDJSON)
        assert appended.status_code == 200
        assert appended.json()["accepted_count"] == 3
        too_many = api.post(f"{DATASETS}/{ds['id']}/datapoints", content=lines("m", 1001), headers=NDJSON)
        assert 400 <= too_many.status_code < 500

        t = upload_url(api, ds["id"], "tampered.csv")
        tampered = t["upload_url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
        assert put(tampered, body, t["content_type"]).status_code == 403

        nf = api.get(f"{DATASETS}/0192a3b5-e8f9-7a0b-1c2d-000000000000/imports/01935c2d-1a2b-3c4d-5e6f-000000000000")
        assert nf.status_code == 404
        assert "error" in nf.json()
