"""Every sentence an agent reads, in one place: import summaries, dataset views, schema changes, appends, checks,
next calls, errors' advice and progress messages (docs/architecture.md, Layers).

Each function takes values (never a live job or a placeholder object) and returns text. Text taken from a file or
from Prolific is cleaned here (`one_line`); the MCP layer still passes all text through `for_agent` on the way out.
One submodule per kind of answer; this package re-exports what the rest of the server uses, so callers write
`render.import_summary(...)`.
"""

from prolific_mcp.operations.render.appends import append_still_blocked, appended
from prolific_mcp.operations.render.calls import (
    RUNNING_IMPORT,
    after_create,
    after_import,
    after_schema,
    after_view,
    apply_schema,
    call,
    call_text,
    next_call,
)
from prolific_mcp.operations.render.checks import key_check, key_check_info, suggested, validated
from prolific_mcp.operations.render.dataset_views import (
    created,
    dataset_view,
    datasets,
    schema_refused_by_workspace,
    which_workspace,
    workspaces,
)
from prolific_mcp.operations.render.errors import error_text, unexpected_failure
from prolific_mcp.operations.render.groups import bounded, file_excerpts, group_infos, suggest_fix
from prolific_mcp.operations.render.imports import (
    ImportOutcome,
    import_summary,
    still_going,
    stored_outcome,
    upload_ended,
    upload_unchecked,
    uploading_elsewhere,
    v3_breaking_rows,
    v3_outcome,
    with_orphans,
)
from prolific_mcp.operations.render.progress_messages import (
    APPEND_WAITING,
    import_progress,
    migration_progress,
    progress,
)
from prolific_mcp.operations.render.schemas import migration, migration_status, parked_imports

__all__ = [
    "APPEND_WAITING",
    "RUNNING_IMPORT",
    "ImportOutcome",
    "after_create",
    "after_import",
    "after_schema",
    "after_view",
    "append_still_blocked",
    "appended",
    "apply_schema",
    "bounded",
    "call",
    "call_text",
    "created",
    "dataset_view",
    "datasets",
    "error_text",
    "file_excerpts",
    "group_infos",
    "import_progress",
    "import_summary",
    "key_check",
    "key_check_info",
    "migration",
    "migration_progress",
    "migration_status",
    "next_call",
    "parked_imports",
    "progress",
    "schema_refused_by_workspace",
    "still_going",
    "stored_outcome",
    "suggest_fix",
    "suggested",
    "unexpected_failure",
    "upload_ended",
    "upload_unchecked",
    "uploading_elsewhere",
    "v3_breaking_rows",
    "v3_outcome",
    "validated",
    "which_workspace",
    "with_orphans",
    "workspaces",
]
