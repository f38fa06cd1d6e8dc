"""The emulated API over loopback HTTP: auth, workspaces, users, datasets, upload URLs, batches, errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from prolific_mcp.sandbox import Sandbox

from .conftest import client
from .support import DATASETS, SCHEMA, create_dataset, error_of, get_dataset, upload_url

HEX24 = re.compile(r"[0-9a-f]{24}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_seeded_user_and_workspace(sbx: Sandbox, api: httpx2.Client) -> None:
    assert HEX24.fullmatch(sbx.workspace_id)
    assert HEX24.fullmatch(sbx.user_id)
    me = api.get("/api/v1/users/me/")
    assert me.status_code == 200
    assert me.json()["id"] == sbx.user_id
    listed = api.get("/api/v1/workspaces/").json()
    assert listed["meta"]["count"] >= 1
    first = listed["results"][0]
    assert first["id"] == sbx.workspace_id
    assert {"id", "title", "description", "owner", "users", "projects", "wallet"} <= set(first)
    one = api.get(f"/api/v1/workspaces/{sbx.workspace_id}/")
    assert one.status_code == 200
    assert one.json()["title"] == first["title"]


def test_workspace_pagination(fresh: Sandbox, fresh_api: httpx2.Client) -> None:
    """Prolific's list shape: `_links.next` and `_links.previous` are objects with an absolute `href`, null at
    either end (docs/prolific-api.md, What Prolific's CLI and OpenAPI add: 1)."""
    for i in range(4):
        fresh.seed_workspace(f"Extra {i}")
    page = fresh_api.get("/api/v1/workspaces/", params={"limit": 2, "offset": 2}).json()
    assert page["meta"]["count"] == 6  # the two seeded workspaces (typed, and without typed datasets) first
    assert [w["title"] for w in page["results"]] == ["Extra 0", "Extra 1"]
    assert page["_links"]["next"] == {"href": f"{fresh.url}/api/v1/workspaces/?limit=2&offset=4"}
    assert page["_links"]["previous"] == {"href": f"{fresh.url}/api/v1/workspaces/?limit=2&offset=0"}
    assert page["_links"]["self"] == {"href": f"{fresh.url}/api/v1/workspaces/?limit=2&offset=2"}
    assert "links" not in page
    following = fresh_api.get(page["_links"]["next"]["href"]).json()
    assert [w["title"] for w in following["results"]] == ["Extra 2", "Extra 3"]
    assert following["_links"]["next"] == {"href": None}
    first = fresh_api.get("/api/v1/workspaces/", params={"limit": 2}).json()
    assert [w["id"] for w in first["results"]] == [fresh.workspace_id, fresh.legacy_workspace_id]
    assert first["_links"]["previous"] == {"href": None}
    everything = fresh_api.get("/api/v1/workspaces/").json()
    assert len(everything["results"]) == 6 and everything["_links"]["next"] == {"href": None}
    bad = fresh_api.get("/api/v1/workspaces/", params={"limit": "x"})
    assert bad.status_code == 400
    assert "limit" in error_of(bad)["detail"]


def test_batch_list_pages_keep_the_workspace_in_their_links(fresh: Sandbox, fresh_api: httpx2.Client) -> None:
    for i in range(3):
        fresh.seed_batch(fresh.workspace_id, None, name=f"Batch {i}")
    page = fresh_api.get(
        "/api/v1/data-collection/batches", params={"workspace_id": fresh.workspace_id, "limit": 2}
    ).json()
    assert page["meta"]["count"] == 3 and [b["name"] for b in page["results"]] == ["Batch 0", "Batch 1"]
    href = page["_links"]["next"]["href"]
    assert href == f"{fresh.url}/api/v1/data-collection/batches?workspace_id={fresh.workspace_id}&limit=2&offset=2"
    rest = fresh_api.get(href).json()
    assert [b["name"] for b in rest["results"]] == ["Batch 2"] and rest["_links"]["next"] == {"href": None}


def test_unknown_workspace_is_404(api: httpx2.Client) -> None:
    response = api.get("/api/v1/workspaces/ffffffffffffffffffffffff/")
    assert response.status_code == 404
    assert error_of(response)["title"] == "Not Found"


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "no header"),
        ({"Authorization": "Bearer abc"}, "Bearer scheme"),
        ({"Authorization": "Token"}, "empty token"),
        ({"Authorization": "abc"}, "no scheme"),
    ],
)
def test_auth_refused(sbx: Sandbox, headers: dict[str, str], why: str) -> None:
    with httpx2.Client(base_url=sbx.url, headers=headers, timeout=10) as c:
        for path in ("/api/v1/workspaces/", f"{DATASETS}/x", "/api/v1/users/me/"):
            response = c.get(path)
            assert response.status_code == 401, why
            assert "Token" in error_of(response)["detail"] or why == "empty token"


def test_any_token_accepted_by_default(sbx: Sandbox) -> None:
    for token in ("a", "tok-SENTINEL-123", "x" * 200):
        with client(sbx, token) as c:
            assert c.get("/api/v1/users/me/").status_code == 200


def test_fixed_token(tmp_path: object) -> None:
    with Sandbox.start(pace="fast", token="the-one") as sandbox:
        with client(sandbox, "other") as c:
            response = c.get("/api/v1/users/me/")
            assert response.status_code == 401
            assert error_of(response)["detail"] == "Invalid token."
        with client(sandbox, "the-one") as c:
            assert c.get("/api/v1/users/me/").status_code == 200


def test_unknown_paths_and_methods(api: httpx2.Client) -> None:
    slash = api.get("/api/v1/workspaces")
    assert slash.status_code == 404
    assert "Did you mean /api/v1/workspaces/?" in error_of(slash)["detail"]
    datasets_slash = api.post(f"{DATASETS}/", json={})
    assert datasets_slash.status_code == 404
    assert f"Did you mean {DATASETS}?" in error_of(datasets_slash)["detail"]
    assert api.get("/api/v2/nothing").status_code == 404
    wrong = api.delete(f"{DATASETS}/abc")
    assert wrong.status_code == 405
    assert "GET" in error_of(wrong)["detail"]


def test_create_v4_dataset(sbx: Sandbox, api: httpx2.Client) -> None:
    before = datetime.now(UTC)
    ds = create_dataset(api, sbx.workspace_id, name="  Reviews  ")
    assert UUID.fullmatch(ds["id"])
    assert ds["name"] == "Reviews"
    assert ds["schema_version"] == 4
    assert ds["schema"] == SCHEMA
    assert ds["imports"] == []
    assert ds["total_datapoint_count"] == 0
    assert ds["workspace_id"] == sbx.workspace_id
    assert ds["created_by"] == sbx.user_id
    assert "status" not in ds
    assert "filename" not in ds
    created = datetime.fromisoformat(ds["created_at"].replace("Z", "+00:00"))
    assert abs((created - before).total_seconds()) < 60
    assert get_dataset(api, ds["id"]) == ds


def test_without_schema_a_typed_workspace_makes_v4_with_schema_null(sbx: Sandbox, api: httpx2.Client) -> None:
    """The version is the workspace's (docs/prolific-api.md, What Prolific's CLI and OpenAPI add: 6): no `schema`
    in the default (typed) workspace is a V4 dataset whose schema is null; an empty schema counts as none."""
    for schema in (None, {"strict": False, "fields": {}}):
        ds = create_dataset(api, sbx.workspace_id, schema=schema)
        assert (ds["schema_version"], ds["schema"], ds["imports"]) == (4, None, [])
        assert "status" not in ds and get_dataset(api, ds["id"]) == ds
    explicit_null = api.post(DATASETS, json={"name": "n", "workspace_id": sbx.workspace_id, "schema": None})
    assert explicit_null.status_code == 201 and explicit_null.json()["schema_version"] == 4


def test_a_workspace_without_typed_datasets_makes_v3_and_refuses_a_schema(sbx: Sandbox, api: httpx2.Client) -> None:
    refused = api.post(DATASETS, json={"name": "typed", "workspace_id": sbx.legacy_workspace_id, "schema": SCHEMA})
    assert refused.status_code == 400
    detail = error_of(refused)["detail"]
    assert list(detail) == ["schema"] and "typed-dataset feature" in detail["schema"][0]
    empty = api.post(
        DATASETS,
        json={"name": "empty", "workspace_id": sbx.legacy_workspace_id, "schema": {"strict": False, "fields": {}}},
    )
    assert empty.status_code == 400  # any schema at all, as Prolific's CLI describes it
    seeded = sbx.seed_workspace("Also untyped", typed=False)
    assert create_dataset(api, seeded["id"], schema=None)["schema_version"] == 3
    assert create_dataset(api, sbx.seed_workspace("Typed again")["id"], schema=None)["schema_version"] == 4


def test_create_v3_dataset(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.legacy_workspace_id, schema=None)
    assert ds["schema_version"] == 3
    assert ds["status"] == "UNINITIALISED"
    assert ds["filename"] is None
    assert ds["imports"] is None
    assert ds["schema"] is None
    assert api.get(f"{DATASETS}/{ds['id']}/status").json() == {"status": "UNINITIALISED"}


def test_v4_status_endpoint_has_no_status(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    assert api.get(f"{DATASETS}/{ds['id']}/status").json() == {"status": None}


@pytest.mark.parametrize(
    ("schema", "key"),
    [
        ({"strict": True, "fields": {f"f{i}": {"type": "text"} for i in range(201)}}, "schema.fields"),
        ({"strict": True, "fields": {"k" * 129: {"type": "text"}}}, "schema.fields." + "k" * 40),
        ({"strict": True, "fields": {"a": {"type": "text", "label": "l" * 256}}}, "schema.fields.a"),
        ({"strict": True, "fields": {"a": {"type": "sound"}}}, "schema.fields.a"),
        ({"fields": {"a": {"type": "text"}}}, "schema.strict"),
        ({"strict": "yes", "fields": {}}, "schema.strict"),
        (
            {"strict": True, "fields": {"a": {"type": "task_group_id"}, "b": {"type": "task_group_id"}}},
            "schema.fields",
        ),
        ([], "schema"),
    ],
)
def test_schema_problems_are_400(sbx: Sandbox, api: httpx2.Client, schema: object, key: str) -> None:
    response = api.post(DATASETS, json={"name": "bad", "workspace_id": sbx.workspace_id, "schema": schema})
    assert response.status_code == 400
    detail = error_of(response)["detail"]
    assert isinstance(detail, dict)
    assert key in detail, detail
    assert all(isinstance(m, str) for m in detail[key])


def test_create_dataset_field_errors(sbx: Sandbox, api: httpx2.Client) -> None:
    missing = api.post(DATASETS, json={})
    assert missing.status_code == 400
    assert set(error_of(missing)["detail"]) == {"name", "workspace_id"}
    long_name = api.post(DATASETS, json={"name": "n" * 256, "workspace_id": sbx.workspace_id})
    assert "name" in error_of(long_name)["detail"]
    unknown = api.post(DATASETS, json={"name": "x", "workspace_id": "ffffffffffffffffffffffff"})
    assert unknown.status_code == 404
    not_json = api.post(DATASETS, content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert "not valid JSON" in error_of(not_json)["detail"]
    not_object = api.post(DATASETS, json=[1])
    assert not_object.status_code == 400


def test_unknown_dataset_everywhere_is_404(api: httpx2.Client) -> None:
    ghost = "0192a3b5-e8f9-7a0b-1c2d-000000000000"
    for method, path in [
        ("GET", f"{DATASETS}/{ghost}"),
        ("PATCH", f"{DATASETS}/{ghost}"),
        ("GET", f"{DATASETS}/{ghost}/status"),
        ("GET", f"{DATASETS}/{ghost}/upload-url/a.jsonl"),
        ("GET", f"{DATASETS}/{ghost}/imports/{ghost}"),
        ("GET", f"{DATASETS}/{ghost}/schema-migrations/{ghost}"),
        ("POST", f"{DATASETS}/{ghost}/datapoints"),
    ]:
        response = api.request(method, path, json={"schema": SCHEMA} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path)
        assert "Dataset not found" in error_of(response)["detail"]


def test_unknown_import_and_migration_are_404(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    ghost = "01935c2d-1a2b-3c4d-5e6f-000000000000"
    imp = api.get(f"{DATASETS}/{ds['id']}/imports/{ghost}")
    assert imp.status_code == 404
    assert "Import not found" in error_of(imp)["detail"]
    mig = api.get(f"{DATASETS}/{ds['id']}/schema-migrations/{ghost}")
    assert mig.status_code == 404
    other = create_dataset(api, sbx.workspace_id)
    up = upload_url(api, other["id"], "a.jsonl")
    assert api.get(f"{DATASETS}/{ds['id']}/imports/{up['import_id']}").status_code == 404


def test_upload_url_v4(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    before = sbx.clock.now()
    up = upload_url(api, ds["id"], "reviews.jsonl")
    assert set(up) == {"dataset_id", "upload_url", "http_method", "import_id", "expires_at", "content_type", "file_key"}
    assert up["dataset_id"] == ds["id"]
    assert up["http_method"] == "PUT"
    assert up["content_type"] == "application/x-ndjson"
    assert UUID.fullmatch(up["import_id"])
    assert up["file_key"].endswith(f"/{up['import_id']}/reviews.jsonl")
    url = urlsplit(up["upload_url"])
    assert f"{url.scheme}://{url.netloc}" == sbx.s3_url
    params = parse_qs(url.query)
    assert set(params) == {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    }
    assert params["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert params["X-Amz-Expires"] == ["900"]
    assert re.fullmatch(r"[0-9a-f]{64}", params["X-Amz-Signature"][0])
    expires = datetime.fromisoformat(up["expires_at"].replace("Z", "+00:00")).timestamp()
    assert before + 899 <= expires <= before + 901
    csv_up = upload_url(api, ds["id"], "more data.csv")
    assert csv_up["content_type"] == "text/csv"
    assert "more%20data.csv" in csv_up["upload_url"]
    imports = get_dataset(api, ds["id"])["imports"]
    assert [i["import_id"] for i in imports] == [csv_up["import_id"], up["import_id"]]
    assert all(i["status"] == "uninitialised" for i in imports)
    assert imports[1]["filename"] == "reviews.jsonl"
    assert imports[1]["type"] == "file_upload"


def test_upload_url_v3(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.legacy_workspace_id, schema=None)
    up = upload_url(api, ds["id"], "images.zip")
    assert up["content_type"] == "application/zip"
    assert "import_id" not in up
    assert upload_url(api, ds["id"], "rows.csv")["content_type"] == "text/csv"
    jsonl = api.get(f"{DATASETS}/{ds['id']}/upload-url/rows.jsonl")
    assert jsonl.status_code == 400
    assert ".csv or .zip" in str(error_of(jsonl)["detail"])


@pytest.mark.parametrize(
    ("filename", "needle"),
    [
        ("data.json", ".csv or .jsonl"),
        ("data.ndjson", "as .jsonl"),
        ("data.zip", ".csv or .jsonl"),
        ("noextension", "no extension"),
        ("a%2F..%2Fb.jsonl", "one path segment"),
        ("a%5Cb.jsonl", "one path segment"),
        (".hidden.jsonl", "start with '.'"),
        ("bad%00name.jsonl", "control"),
        ("x" * 251 + ".jsonl", "1 to 255"),
    ],
)
def test_upload_url_refuses_bad_filenames(sbx: Sandbox, api: httpx2.Client, filename: str, needle: str) -> None:
    ds = create_dataset(api, sbx.workspace_id)
    response = api.get(f"{DATASETS}/{ds['id']}/upload-url/{filename}")
    assert response.status_code == 400
    assert needle in str(error_of(response)["detail"])
    assert get_dataset(api, ds["id"])["imports"] == []


def test_url_lifetime_is_configurable() -> None:
    with Sandbox.start(pace="fast", url_lifetime=60) as sandbox, client(sandbox) as c:
        ds = create_dataset(c, sandbox.workspace_id)
        up = upload_url(c, ds["id"], "a.jsonl")
        assert parse_qs(urlsplit(up["upload_url"]).query)["X-Amz-Expires"] == ["60"]


def test_batches(sbx: Sandbox, api: httpx2.Client) -> None:
    ds = create_dataset(api, sbx.workspace_id, name="for batches")
    other = sbx.seed_workspace("Other")
    seeded = sbx.seed_batch(sbx.workspace_id, ds["id"], name="Batch A", status="READY")
    sbx.seed_batch(other["id"], None, name="Elsewhere")
    response = api.get("/api/v1/data-collection/batches", params={"workspace_id": sbx.workspace_id})
    assert response.status_code == 200
    body = response.json()
    batch = next(b for b in body["results"] if b["id"] == seeded["id"])
    assert batch == seeded
    assert batch["name"] == "Batch A"
    assert batch["status"] == "READY"
    assert batch["workspace_id"] == sbx.workspace_id
    assert batch["dataset_id"] == ds["id"]
    assert batch["datasets"] == [{"id": ds["id"], "name": "for batches", "total_datapoint_count": 0}]
    assert all(b["workspace_id"] == sbx.workspace_id for b in body["results"])
    assert body["meta"]["count"] == len(body["results"])
    elsewhere = api.get("/api/v1/data-collection/batches", params={"workspace_id": other["id"]}).json()
    assert [b["name"] for b in elsewhere["results"]] == ["Elsewhere"]
    assert elsewhere["results"][0]["datasets"] == []
    missing = api.get("/api/v1/data-collection/batches")
    assert missing.status_code == 400
    assert "workspace_id" in error_of(missing)["detail"]
