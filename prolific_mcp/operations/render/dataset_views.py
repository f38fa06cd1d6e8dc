"""Workspaces and datasets: the lists, a dataset's view, a created dataset, and a workspace that refused a schema."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from prolific_mcp.operations.render.calls import after_create, call_text
from prolific_mcp.operations.results import DatasetResult, WorkspaceInfo
from prolific_mcp.text import one_line, plural


def workspaces(infos: Sequence[WorkspaceInfo], default: str | None) -> str:
    lines = [f"{plural(len(infos), 'workspace')}:"]
    lines += [
        f"- {one_line(w.title or '', 120) or '(untitled)'} ({w.id})" + (" [default]" if w.id == default else "")
        for w in infos
    ]
    if default is None and infos:
        lines.append("Pass workspace_id to create_dataset, or set PROLIFIC_WORKSPACE_ID to choose a default.")
    return "\n".join(lines)


def which_workspace(workspaces: Sequence[tuple[str, str | None]]) -> str:
    """Why create_dataset needs a workspace_id, listing the choices."""
    if not workspaces:
        return "this account has no workspace: create one in the Prolific app first"
    listed = "; ".join(f"{wid} ({one_line(title or '', 60)})" for wid, title in workspaces[:20])
    return (
        f"this account has {len(workspaces)} workspaces, so say which one: pass workspace_id (one of: {listed}) "
        "or set PROLIFIC_WORKSPACE_ID."
    )


def datasets(items: Sequence[tuple[str, str | None, str]]) -> str:
    """(id, name, source) of each known dataset."""
    if not items:
        return (
            "No datasets known yet. Prolific has no endpoint that lists datasets: this list holds the datasets "
            "created or used through this server and those attached to batches. Create one with create_dataset, "
            "or pass a dataset id you already have to get_dataset."
        )
    lines = [f"{plural(len(items), 'dataset')} known (Prolific has no list endpoint; see 'source'):"]
    lines += [f"- {one_line(name or '', 120) or '(unnamed)'} ({did}), {source}" for did, name, source in items[:50]]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Untrusted text as one cell of a markdown table: one line, and no '|' to split the row."""
    return one_line(text, 60).replace("|", "/")


def dataset_view(result: DatasetResult) -> str:
    """A readable view of a dataset: identity, counts, the schema as a table, the latest imports."""
    lines = [
        f"{one_line(result.name or '', 120) or '(unnamed)'} ({result.id}), V{result.version}, "
        f"workspace {result.workspace_id or '?'}",
        f"Datapoints: {result.total_datapoint_count if result.total_datapoint_count is not None else 'unknown'}"
        + (f"; status {result.status}" if result.status else ""),
    ]
    if result.version == 4:
        if result.fields:
            lines.append(f"Schema (strict={str(result.strict).lower()}):")
            lines.append("| field | type | label |")
            lines.append("|---|---|---|")
            lines += [f"| {_cell(f.key)} | {_cell(f.type)} | {_cell(f.label or '')} |" for f in result.fields]
        else:
            lines.append("Schema: none yet (uploads wait in pending_schema until set_schema).")
        if result.imports:
            lines.append("Latest imports:")
            for imp in result.imports[:5]:
                counts = ""
                if imp.accepted_count is not None:
                    counts = f": {imp.accepted_count:,} accepted"
                    if imp.rejected_count:
                        counts += f", {imp.rejected_count:,} rejected"
                lines.append(f"- {imp.import_id} {one_line(imp.status, 30)} {one_line(imp.filename or '', 60)}{counts}")
    if result.batches:
        lines.append("Batches: " + ", ".join(result.batches))
    return "\n".join(lines)


def created(result: DatasetResult, *, v3: bool, schemaless: bool) -> str:
    then = call_text(after_create(result.id, schemaless=schemaless and not v3))
    if v3:
        step = (
            f"Next: {then}: Prolific made it V3 (legacy CSV), as this workspace has no typed datasets; V3 takes a "
            "CSV file whose columns are shown to participants (META_ columns are hidden), and has no schema."
        )
    elif schemaless:
        step = f"Next: {then} (suggest_schema helps); an upload before that waits in pending_schema."
    else:
        step = f"Next: {then}."
    return f'Created dataset "{one_line(result.name or "", 120)}" ({result.id}).\n{dataset_view(result)}\n\n{step}'


def schema_refused_by_workspace(workspace_id: str, name: str, exc: BaseException) -> str:
    """create_dataset with fields, refused because the workspace has no typed (V4) datasets."""
    legacy = f"create_dataset(name={orjson.dumps(name).decode()}, workspace_id={orjson.dumps(workspace_id).decode()})"
    return (
        f"Prolific refused the schema for workspace {workspace_id}: typed (V4) datasets are a workspace feature, "
        f"and this workspace does not have it ({one_line(str(exc), 300)}). Nothing was created. Either pick a "
        "workspace with typed datasets (list_workspaces) and call create_dataset there with the same fields, or "
        f"use the legacy CSV path here: {legacy} (no fields) makes a V3 dataset, which takes one CSV file whose "
        "columns are shown to participants (META_ columns are hidden) and has no schema. Prolific's support can "
        "enable typed datasets for a workspace."
    )
