"""Pydantic models of the requests and responses of the Prolific datasets API (docs/prolific-api.md, Models).

Responses are parsed tolerantly: unknown fields are kept (`extra="allow"`), optional fields may be missing,
enums that may grow (field types, statuses) are plain strings, and `schema_version` may be `4` or `"4"`.
Only what a caller cannot do without (an id, a status, an upload URL) is required.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from prolific_mcp.records.formats import CONTENT_TYPES
from prolific_mcp.redaction import redact_url

__all__ = [
    "IMPORT_TERMINAL_STATUSES",
    "MIGRATION_TERMINAL_STATUSES",
    "V3_TERMINAL_STATUSES",
    "AppendResult",
    "Batch",
    "BatchDataset",
    "CreateDatasetRequest",
    "Dataset",
    "DatasetSchema",
    "DatasetStatus",
    "ImportJob",
    "ImportJobError",
    "MigrationJob",
    "MigrationJobError",
    "PutResult",
    "SchemaField",
    "SchemaUpdate",
    "UpdateSchemaRequest",
    "UploadTarget",
    "User",
    "V3Baseline",
    "Workspace",
    "content_type_for",
]

IMPORT_TERMINAL_STATUSES: Final = frozenset({"complete", "partial", "failed", "pending_schema"})
"""Import statuses that end polling (docs/prolific-api.md, Statuses); any other, even an unknown one, does not."""
MIGRATION_TERMINAL_STATUSES: Final = frozenset({"complete", "partial", "failed"})
"""Schema-migration statuses that end polling (docs/prolific-api.md, Statuses)."""
V3_TERMINAL_STATUSES: Final = frozenset({"READY", "ERROR"})
"""V3 dataset statuses that end polling (docs/prolific-api.md, Statuses)."""

_DATETIME: Final = TypeAdapter(datetime)


def _lenient_datetime(value: object) -> datetime | None:
    """An ISO 8601 date-time, or None for a missing or unparsable one (a bad timestamp is not worth failing)."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return _DATETIME.validate_python(value)
    except ValidationError:
        return None


def _lenient_int(value: object) -> int | None:
    """An int, or None for a missing or non-numeric value; `'4'` becomes 4."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("v")
        if text.isdigit():
            return int(text)
    return None


LenientDatetime = Annotated[datetime | None, BeforeValidator(_lenient_datetime)]
LenientInt = Annotated[int | None, BeforeValidator(_lenient_int)]


def _list_or_empty(value: object) -> object:
    return [] if value is None else value


class ApiModel(BaseModel):
    """Base of every response model: unknown fields are kept, fields may be set by name or alias."""

    model_config = ConfigDict(extra="allow", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)


# --- schema ------------------------------------------------------------------------------------------------------


class SchemaField(ApiModel):
    """One schema field: `type` is a string (the live enum may hold more than the docs list)."""

    type: str
    label: str | None = None


class DatasetSchema(ApiModel):
    """A V4 dataset schema: `strict` and the fields by key."""

    strict: bool = False
    fields: dict[str, SchemaField] = Field(default_factory=dict)

    @field_validator("fields", mode="before")
    @classmethod
    def _fields_or_empty(cls, value: object) -> object:
        return {} if value is None else value

    @property
    def is_empty(self) -> bool:
        """A schema with no fields counts as no schema (docs/prolific-api.md, Where the docs are silent: 2)."""
        return not self.fields

    def to_api(self) -> dict[str, Any]:
        """The JSON body form: `{"strict": ..., "fields": {key: {"type": ..., "label"?: ...}}}`."""
        return {
            "strict": self.strict,
            "fields": {
                key: {"type": spec.type, **({"label": spec.label} if spec.label is not None else {})}
                for key, spec in self.fields.items()
            },
        }


# --- accounts and workspaces -------------------------------------------------------------------------------------


class User(ApiModel):
    """`GET /api/v1/users/me/`: the id is relied on; `current_workspace_id` is used where present (the sandbox)."""

    id: str
    current_workspace_id: str | None = None
    email: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class Workspace(ApiModel):
    """One entry of `GET /api/v1/workspaces/`."""

    id: str
    title: str | None = None
    description: str | None = None


class BatchDataset(ApiModel):
    """A dataset as a batch response lists it."""

    id: str
    name: str | None = None
    total_datapoint_count: LenientInt = None


class Batch(ApiModel):
    """An AI Task Builder batch (only what `list_datasets` needs: the datasets it uses)."""

    id: str
    name: str | None = None
    workspace_id: str | None = None
    status: str | None = None
    dataset_id: str | None = None
    datasets: Annotated[list[BatchDataset], BeforeValidator(_list_or_empty)] = Field(default_factory=list)

    @property
    def dataset_ids(self) -> list[str]:
        """The ids of the datasets this batch uses, from `datasets[]` and `dataset_id`, without repeats."""
        ids = [d.id for d in self.datasets]
        if self.dataset_id and self.dataset_id not in ids:
            ids.append(self.dataset_id)
        return ids


# --- imports and migrations -------------------------------------------------------------------------------------


class ImportJobError(ApiModel):
    """One itemised rejected record: 0-based `record_index`, `field` (`_raw` = unparseable), `reason`."""

    record_index: LenientInt = None
    field: str | None = None
    reason: str | None = None


class ImportJob(ApiModel):
    """`DatasetImportJob` (docs/prolific-api.md, Models), with the optional live counters Prolific's CLI reads."""

    import_id: str
    status: str
    dataset_id: str | None = None
    type: str | None = None
    filename: str | None = None
    created_at: LenientDatetime = None
    updated_at: LenientDatetime = None
    accepted_count: LenientInt = None
    rejected_count: LenientInt = None
    errors: Annotated[list[ImportJobError], BeforeValidator(_list_or_empty)] = Field(default_factory=list)
    reason: str | None = None
    processing_started_at: LenientDatetime = None
    processed_offset: LenientInt = None
    written_count: LenientInt = None
    duplicate_count: LenientInt = None
    duplicate_seen_count: LenientInt = None
    rejected_seen_count: LenientInt = None

    @property
    def is_terminal(self) -> bool:
        """complete, partial, failed or pending_schema; an unknown status is not terminal."""
        return self.status in IMPORT_TERMINAL_STATUSES

    @property
    def processing_seconds(self) -> float | None:
        """Seconds from `processing_started_at` to `updated_at`, by the server's clock: how long it took to process
        `processed_offset` records (None unless both are given, comparably)."""
        started, updated = self.processing_started_at, self.updated_at
        if started is None or updated is None or (started.tzinfo is None) != (updated.tzinfo is None):
            return None
        return (updated - started).total_seconds()


class MigrationJobError(ApiModel):
    """One item of a migration's `errors` (its shape is undocumented: everything optional)."""

    record_index: LenientInt = None
    datapoint_id: str | None = None
    field: str | None = None
    reason: str | None = None

    @classmethod
    def _coerce(cls, value: object) -> object:
        return {"reason": value} if isinstance(value, str) else value


def _migration_errors(value: object) -> object:
    if value is None:
        return []
    if isinstance(value, list):
        return [MigrationJobError._coerce(item) for item in value]
    return value


class MigrationJob(ApiModel):
    """A schema migration (docs/prolific-api.md, Statuses): `processing`, then complete / partial / failed."""

    job_id: str
    status: str
    dataset_id: str | None = None
    schema_version: LenientInt = None
    reprocessed_count: LenientInt = None
    failed_count: LenientInt = None
    errors: Annotated[list[MigrationJobError], BeforeValidator(_migration_errors)] = Field(default_factory=list)
    reason: str | None = None

    @property
    def is_terminal(self) -> bool:
        """complete, partial or failed; `processing` and anything unknown are not terminal."""
        return self.status in MIGRATION_TERMINAL_STATUSES


# --- datasets ----------------------------------------------------------------------------------------------------


class Dataset(ApiModel):
    """`AITaskBuilderDataset` (docs/prolific-api.md, Models): the V3 fields (`status`, `filename`, grouping) and the
    V4 ones (`schema` as `dataset_schema`, `imports`, most recent first)."""

    id: str
    name: str | None = None
    created_at: LenientDatetime = None
    created_by: str | None = None
    workspace_id: str | None = None
    total_datapoint_count: LenientInt = None
    schema_version: LenientInt = None
    status: str | None = None
    filename: str | None = None
    has_predetermined_grouping_id: bool | None = None
    dataset_schema: DatasetSchema | None = Field(default=None, alias="schema")
    imports: list[ImportJob] | None = None

    @model_validator(mode="before")
    @classmethod
    def _import_ids(cls, data: Any) -> Any:
        """Each import gets the dataset's id when it lacks one; an import with no `import_id` cannot be named or
        followed, so it is left out (docs/prolific-api.md, What Prolific's CLI and OpenAPI add: 3)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("imports"), list):
            return data
        dataset_id = data.get("id")
        imports = [
            {**job, "dataset_id": job.get("dataset_id") or dataset_id} if isinstance(job, Mapping) else job
            for job in data["imports"]
            if not isinstance(job, Mapping) or job.get("import_id")
        ]
        return {**data, "imports": imports}

    @property
    def is_v4(self) -> bool:
        """True for a V4 dataset: Prolific's `schema_version` decides (4 or more); only when it is missing do a
        schema or an imports list stand in for it. Nothing else is ever assumed (docs/prolific-api.md, What
        Prolific's CLI and OpenAPI add: 6)."""
        if self.schema_version is not None:
            return self.schema_version >= 4
        return self.dataset_schema is not None or self.imports is not None


class DatasetStatus(ApiModel):
    """`GET .../datasets/{id}/status` (V3): UNINITIALISED, PROCESSING, READY or ERROR (or missing)."""

    status: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status is not None and self.status.upper() in V3_TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class V3Baseline:
    """A V3 dataset as it stood before an upload. Right after a new file, its status may still be the previous
    file's READY or ERROR (docs/prolific-api.md, What Prolific's CLI and OpenAPI add: 5): such a status is the new
    file's outcome only once the status has moved on since, or the dataset shows another file or count."""

    status: str | None
    filename: str | None
    total_datapoint_count: int | None

    @classmethod
    def of(cls, dataset: Dataset) -> V3Baseline:
        return cls((dataset.status or "").upper() or None, dataset.filename, dataset.total_datapoint_count)

    @property
    def may_linger(self) -> bool:
        """True when the dataset already had an outcome, which a status read after the upload may still show."""
        return self.status in V3_TERMINAL_STATUSES

    def changed(self, dataset: Dataset) -> bool:
        """True when `dataset` has a terminal status and shows another file or datapoint count than before."""
        if (dataset.status or "").upper() not in V3_TERMINAL_STATUSES:
            return False
        return (dataset.filename, dataset.total_datapoint_count) != (self.filename, self.total_datapoint_count)


class SchemaUpdate(ApiModel):
    """The answer to PATCH schema: the dataset, and `migration_job_id` when a migration started.

    `answer_empty` is True when Prolific answered 2xx without a dataset (an empty body, a 204): the change was
    accepted, `dataset` was read again afterwards, and whether a migration started is unknown.
    """

    dataset: Dataset
    migration_job_id: str | None = None
    answer_empty: bool = False


# --- uploads -----------------------------------------------------------------------------------------------------


def content_type_for(filename: str) -> str | None:
    """The content type for an upload by extension: jsonl/ndjson, csv, zip; None otherwise (docs/prolific-api.md,
    Where the docs are silent: 4)."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return CONTENT_TYPES.get("jsonl" if ext == "ndjson" else ext)


def _method_or_put(value: object) -> object:
    """`http_method` null, missing or blank means PUT; anything else is kept, upper-cased."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "PUT"
    return (value if isinstance(value, str) else str(value)).strip().upper()


class UploadTarget(ApiModel):
    """The answer to GET upload-url. The old `{url, key}` shape is accepted too.

    `content_type` is Prolific's, or derived from `filename`'s extension when it was missing
    (`content_type_inferred`). The URL is a credential: `repr` and `str` show it redacted.
    """

    upload_url: str
    http_method: Annotated[str, BeforeValidator(_method_or_put)] = "PUT"
    """The method for the upload: PUT when Prolific leaves it out or sends null (docs/prolific-api.md, What
    Prolific's CLI and OpenAPI add: 4)."""
    import_id: str | None = None
    expires_at: LenientDatetime = None
    content_type: str | None = None
    dataset_id: str | None = None
    file_key: str | None = None
    filename: str | None = None
    content_type_inferred: bool = False

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, filename: str, dataset_id: str) -> UploadTarget:
        """Build from the response body; raises pydantic's ValidationError when `upload_url` is missing."""
        body = dict(data)
        if "upload_url" not in body and "url" in body:
            body["upload_url"] = body["url"]
        if "file_key" not in body and "key" in body:
            body["file_key"] = body["key"]
        body.setdefault("dataset_id", dataset_id)
        body["filename"] = filename
        if not body.get("content_type"):
            body["content_type"] = content_type_for(filename)
            body["content_type_inferred"] = True
        return cls.model_validate(body)

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, (redact_url(value) if key in ("upload_url", "url") and isinstance(value, str) else value)

    def __str__(self) -> str:
        return f"upload target for import {self.import_id} ({redact_url(self.upload_url)})"


class PutResult(ApiModel):
    """A successful PUT: the status, the bytes sent on the last attempt, and how many attempts it took."""

    status_code: int
    bytes_sent: int
    attempts: int = 1
    etag: str | None = None

    @property
    def retried(self) -> bool:
        return self.attempts > 1


class AppendResult(ApiModel):
    """The answer to POST datapoints, plus how many attempts it took (docs/prolific-api.md, Where the docs are
    silent: 12)."""

    accepted_count: LenientInt = None
    rejected_count: LenientInt = None
    duplicate_count: LenientInt = None
    errors: Annotated[list[ImportJobError], BeforeValidator(_list_or_empty)] = Field(default_factory=list)
    attempts: int = 1

    @property
    def retried(self) -> bool:
        """True when the append was sent more than once (harmless: appends are idempotent)."""
        return self.attempts > 1


# --- request bodies ----------------------------------------------------------------------------------------------


class CreateDatasetRequest(BaseModel):
    """Body of POST datasets. A schema without fields is not sent (Prolific's CLI refuses an empty schema): without
    a `schema` key the workspace decides the version (V4 with no schema yet, or V3 where typed datasets are off)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    workspace_id: str
    dataset_schema: DatasetSchema | None = None

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "workspace_id": self.workspace_id}
        if self.dataset_schema is not None and not self.dataset_schema.is_empty:
            body["schema"] = self.dataset_schema.to_api()
        return body


class UpdateSchemaRequest(BaseModel):
    """Body of PATCH dataset: the whole new schema."""

    model_config = ConfigDict(extra="forbid")

    dataset_schema: DatasetSchema

    def to_api(self) -> dict[str, Any]:
        return {"schema": self.dataset_schema.to_api()}
