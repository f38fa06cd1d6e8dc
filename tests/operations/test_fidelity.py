"""Fidelity to the real API, at the operations: the dataset version is the workspace's (no schema key without
fields, a refused schema offers the legacy CSV path, `schema_version` is read and never assumed), and a V3
re-upload is not reported on the status left over from the previous file (docs/prolific-api.md, What Prolific's
CLI and OpenAPI add)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from prolific_mcp.api.errors import BadRequestError
from prolific_mcp.api.models import Dataset, DatasetSchema, DatasetStatus, PutResult, UploadTarget, User, Workspace
from prolific_mcp.operations import datasets, uploads
from prolific_mcp.operations.deps import Deps, OperationError
from tests.operations.conftest import DS, Clock, FakeClient

pytestmark = pytest.mark.anyio

TYPED = "6278acb09062db3b35bcbeb0"
UNTYPED = "6278acb09062db3b35bcbeb1"
FIELDS = [{"key": "review", "type": "text", "label": "Review"}]
REFUSAL = (
    "Schemas are only accepted for workspaces where the typed-dataset feature is enabled, and this workspace does "
    "not have it."
)


@dataclass
class WorkspaceClient(FakeClient):
    """The fake client, plus workspaces (the first typed, the second not), dataset creation as Prolific decides it,
    and a V3 upload whose dataset status and view are scripted."""

    created: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    views: list[Dataset] = field(default_factory=list)
    current_workspace: str | None = TYPED
    other_refusal: bool = False

    async def get_me(self) -> User:
        return User(id="user-1", current_workspace_id=self.current_workspace)

    async def list_workspaces(self) -> list[Workspace]:
        return [Workspace(id=TYPED, title="Typed"), Workspace(id=UNTYPED, title="Legacy")]

    async def create_dataset(self, name: str, workspace_id: str, schema: DatasetSchema | None) -> Dataset:
        body = schema.to_api() if schema is not None else None
        self.created.append((name, workspace_id, body))
        if self.other_refusal:
            raise BadRequestError("Prolific rejected the request (HTTP 400)", details=("name: too long",))
        if workspace_id == UNTYPED and schema is not None:
            raise BadRequestError(
                f"Prolific rejected the request for workspace {workspace_id} (HTTP 400): Prolific says: Bad Request: "
                f"schema: {REFUSAL}. Fix the request and try again",
                details=(f"schema: {REFUSAL}",),
            )
        data: dict[str, Any] = {"id": DS, "name": name, "workspace_id": workspace_id, "total_datapoint_count": 0}
        if workspace_id == UNTYPED:
            data.update(schema_version=3, status="UNINITIALISED", filename=None, schema=None, imports=None)
        else:
            data.update(schema_version=4, schema=body, imports=[])
        self.datasets[DS] = Dataset.model_validate(data)
        return self.datasets[DS]

    async def get_dataset(self, dataset_id: str) -> Dataset:
        self.calls.append(f"get_dataset {dataset_id}")
        if self.views:
            return self.views.pop(0) if len(self.views) > 1 else self.views[0]
        return self.datasets[dataset_id]

    async def get_dataset_status(self, dataset_id: str) -> DatasetStatus:
        self.calls.append("status")
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return DatasetStatus(status=status)

    async def get_upload_url(self, dataset_id: str, filename: str, *, expect_import_id: bool = True) -> UploadTarget:
        self.calls.append(f"upload_url {filename}")
        return UploadTarget.from_api(
            {"upload_url": "http://127.0.0.1:9/bucket/k?X-Amz-Signature=s", "http_method": None},
            filename=filename,
            dataset_id=dataset_id,
        )

    async def put_file(self, target: UploadTarget, source: Any, *, size: int, **_: Any) -> PutResult:
        self.calls.append("put")
        return PutResult(status_code=200, bytes_sent=size)


@pytest.fixture
def fake() -> WorkspaceClient:
    return WorkspaceClient()


def v3(status: str, filename: str | None, total: int) -> Dataset:
    return Dataset.model_validate(
        {
            "id": DS,
            "name": "Legacy",
            "schema_version": 3,
            "status": status,
            "filename": filename,
            "total_datapoint_count": total,
            "schema": None,
            "imports": None,
        }
    )


# --- create_dataset ------------------------------------------------------------------------------------------------


async def test_without_fields_no_schema_is_sent_and_the_typed_workspace_gives_v4(
    fake: WorkspaceClient, make_deps: Callable[..., Deps]
) -> None:
    result = await datasets.create_dataset(make_deps(), "Reviews", TYPED)
    assert fake.created == [("Reviews", TYPED, None)]
    assert (result.version, result.fields, result.created) == (4, [], True)
    assert "pending_schema" in result.text and "set_schema" in result.text


async def test_without_fields_a_workspace_without_typed_datasets_gives_v3_and_says_so(
    fake: WorkspaceClient, make_deps: Callable[..., Deps]
) -> None:
    result = await datasets.create_dataset(make_deps(), "Legacy", UNTYPED)
    assert fake.created == [("Legacy", UNTYPED, None)]
    assert (result.version, result.status) == (3, "UNINITIALISED")
    assert "V3 (legacy CSV)" in result.text and "no typed datasets" in result.text and ".csv" in result.text


async def test_fields_in_a_workspace_without_typed_datasets_offer_the_legacy_csv_path(
    fake: WorkspaceClient, make_deps: Callable[..., Deps]
) -> None:
    with pytest.raises(OperationError) as refused:
        await datasets.create_dataset(make_deps(), "Typed", UNTYPED, FIELDS)
    text = str(refused.value)
    assert f"workspace {UNTYPED}" in text and "typed (V4) datasets are a workspace feature" in text
    assert "Nothing was created" in text and "typed-dataset feature" in text  # Prolific's own words kept
    assert f'create_dataset(name="Typed", workspace_id="{UNTYPED}")' in text and "CSV" in text
    assert fake.created == [
        ("Typed", UNTYPED, {"strict": False, "fields": {"review": {"type": "text", "label": "Review"}}})
    ]
    assert DS not in fake.datasets


async def test_another_400_on_create_is_not_blamed_on_the_workspace(
    fake: WorkspaceClient, make_deps: Callable[..., Deps]
) -> None:
    fake.other_refusal = True
    with pytest.raises(BadRequestError, match="HTTP 400"):
        await datasets.create_dataset(make_deps(), "Typed", UNTYPED, FIELDS)


async def test_in_sandbox_mode_the_default_workspace_is_the_sandboxs_own(
    fake: WorkspaceClient, make_deps: Callable[..., Deps]
) -> None:
    """Two sandbox workspaces: create_dataset without workspace_id uses the sandbox's default (typed) one, and
    list_workspaces names it; in Prolific mode the agent is asked to choose."""
    result = await datasets.create_dataset(make_deps(), "Reviews")
    assert fake.created[-1][1] == TYPED and result.version == 4
    listed = await datasets.list_workspaces(make_deps())
    assert listed.default_workspace_id == TYPED
    fake.current_workspace = None
    with pytest.raises(OperationError, match=UNTYPED):
        await datasets.create_dataset(make_deps(), "Reviews")
    fake.current_workspace = TYPED
    prolific = make_deps()
    prolific.options = dataclasses.replace(prolific.options, mode="prolific")
    with pytest.raises(OperationError, match=UNTYPED):
        await datasets.create_dataset(prolific, "Reviews")


# --- V3 re-uploads ---------------------------------------------------------------------------------------------------


async def _upload_v3(make_deps: Callable[..., Deps], tmp_path: Path, wait: float) -> Any:
    path = tmp_path / "again.csv"
    path.write_text("text,META_note\na,x\nb,y\n")
    return await uploads.upload_file(make_deps(max_wait=600), DS, str(path), wait_seconds=wait)


async def test_a_v3_reupload_is_not_reported_on_the_previous_ready(
    fake: WorkspaceClient, make_deps: Callable[..., Deps], tmp_path: Path, clock: Clock
) -> None:
    """The dataset was READY with another file; right after the PUT the status still says READY, and the dataset
    still shows the old file: the upload is not reported finished until the status has moved on."""
    before = v3("READY", "first.csv", 5)
    fake.views = [before, before, before, v3("READY", "again.csv", 2)]
    fake.statuses = ["READY", "READY", "PROCESSING", "READY"]
    result = await _upload_v3(make_deps, tmp_path, 120)
    assert result.finished and result.status == "complete"
    assert fake.calls.count("status") == 4  # finished only on the READY that came after PROCESSING
    assert "READY with again.csv" in result.text


async def test_a_lingering_ready_is_never_taken_for_the_new_files_outcome(
    fake: WorkspaceClient, make_deps: Callable[..., Deps], tmp_path: Path, clock: Clock
) -> None:
    before = v3("READY", "first.csv", 5)
    fake.views = [before]
    fake.statuses = ["READY"]
    result = await _upload_v3(make_deps, tmp_path, 20)
    assert not result.finished and result.status != "complete"
    assert "READY with" not in result.text


async def test_a_v3_reupload_finished_between_two_polls_is_seen_in_the_dataset(
    fake: WorkspaceClient, make_deps: Callable[..., Deps], tmp_path: Path, clock: Clock
) -> None:
    """The status never showed PROCESSING to us, but the dataset now holds the new file: that is its outcome."""
    before = v3("READY", "first.csv", 5)
    fake.views = [before, v3("ERROR", "again.csv", 0)]
    fake.statuses = ["ERROR"]
    result = await _upload_v3(make_deps, tmp_path, 120)
    assert result.finished and result.status == "failed"
    assert "ERROR" in result.text


async def test_a_first_v3_upload_takes_the_first_terminal_status(
    fake: WorkspaceClient, make_deps: Callable[..., Deps], tmp_path: Path, clock: Clock
) -> None:
    fake.views = [v3("UNINITIALISED", None, 0)]
    fake.statuses = ["READY"]
    result = await _upload_v3(make_deps, tmp_path, 120)
    assert result.finished and result.status == "complete"
    assert fake.calls.count("status") == 1 and fake.calls.count(f"get_dataset {DS}") == 1
