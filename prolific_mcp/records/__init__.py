"""Record formats and validation rules, shared by the sandbox's import and the client's pre-flight."""

from prolific_mcp.records.formats import (
    CONTENT_TYPES,
    FileFailure,
    FileFormat,
    RawRecord,
    encoding_problem,
    format_from_filename,
    iter_records,
)
from prolific_mcp.records.rules import (
    MISSING_FIELD_REASON,
    RAW_FIELD,
    Problem,
    RecordRules,
    RecordValidator,
    missing_key_from_reason,
    record_digest,
)
from prolific_mcp.records.schema import (
    DISPLAYABLE_TYPES,
    FIELD_TYPES,
    MAX_APPEND_RECORDS,
    MAX_FIELDS,
    MAX_KEY_LENGTH,
    MAX_LABEL_LENGTH,
    FieldSpec,
    Schema,
    SchemaProblem,
    schema_problems,
)

__all__ = [
    "CONTENT_TYPES",
    "DISPLAYABLE_TYPES",
    "FIELD_TYPES",
    "MAX_APPEND_RECORDS",
    "MAX_FIELDS",
    "MAX_KEY_LENGTH",
    "MAX_LABEL_LENGTH",
    "MISSING_FIELD_REASON",
    "RAW_FIELD",
    "FieldSpec",
    "FileFailure",
    "FileFormat",
    "Problem",
    "RawRecord",
    "RecordRules",
    "RecordValidator",
    "Schema",
    "SchemaProblem",
    "encoding_problem",
    "format_from_filename",
    "iter_records",
    "missing_key_from_reason",
    "record_digest",
    "schema_problems",
]
