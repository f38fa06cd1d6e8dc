"""Errors as an agent reads them: the fact the error states, then which tool helps (the API layer names none)."""

from __future__ import annotations

from typing import Final

from prolific_mcp.api.errors import (
    AmbiguousCreateError,
    AmbiguousSchemaUpdateError,
    AmbiguousUploadUrlError,
    NotFoundError,
    UnexpectedResponseError,
    UploadFailedError,
    UploadRejectedError,
    UploadUrlExpiredError,
)
from prolific_mcp.text import one_line


def unexpected_failure(tool: str, exc: BaseException) -> str:
    """An exception no operation expected, as an agent reads it: which tool, what is known, what to do next."""
    what = one_line(f"{type(exc).__name__}: {exc}", 300)
    step = (
        "call upload_file again with the same arguments: an upload already under way is followed, never made twice"
        if tool == "upload_file"
        else f"call {tool} again"
    )
    return (
        f"{tool} failed unexpectedly inside the server ({what}). Next: {step}; if it fails the same way, run "
        "`prolific-datasets-mcp doctor` and report the error with the server's log (stderr)"
    )


def error_text(exc: BaseException) -> str:
    """An error as an agent reads it: the fact it states, then which tool helps (the API layer names none)."""
    return f"{exc}{_advice(exc)}"


_NOT_FOUND_ADVICE: Final = {
    "dataset": ": check the id or call list_datasets",
    "import": " (get_dataset lists the dataset's imports)",
    "migration": ": check the migration_job_id that set_schema returned",
    "workspace": ": call list_workspaces for the valid ids",
}


def _advice(exc: BaseException) -> str:
    if isinstance(exc, NotFoundError):
        return _NOT_FOUND_ADVICE.get(exc.resource.kind, "")
    if isinstance(exc, AmbiguousCreateError):
        return (
            ". Its id never arrived, so get_dataset cannot look it up, and list_datasets only lists it once a batch "
            "uses it: look for a dataset of that name created at that time in Prolific's app (AI Task Builder, the "
            "workspace's datasets) or, after a while, in list_datasets; create it again only if it is not there"
        )
    if isinstance(exc, AmbiguousSchemaUpdateError):
        return " (get_dataset shows it)"
    if isinstance(exc, AmbiguousUploadUrlError):
        seen = "; get_dataset lists the imports" if exc.orphan_import_ids is None else ""
        return f" (call upload_file again){seen}"
    if isinstance(exc, UploadFailedError) and exc.outcome_unknown:
        return f' (get_import_status(import_id="{exc.import_id}") shows it)'
    if isinstance(exc, UploadFailedError | UploadRejectedError | UploadUrlExpiredError):
        return " (call upload_file again)"
    if isinstance(exc, UnexpectedResponseError) and "schema_version" in str(exc):
        return " (get_dataset shows it)"
    return ""
