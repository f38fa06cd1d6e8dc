"""Resources (views of workspaces, datasets, schemas and imports), completions and the import prompt."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference

from prolific_mcp.api.errors import NotFoundError, ProlificError
from prolific_mcp.ids import InvalidIdError
from prolific_mcp.operations import datasets as ops
from prolific_mcp.operations import render
from prolific_mcp.operations.deps import Deps, OperationError
from prolific_mcp.operations.results import DatasetResult, Result, structured
from prolific_mcp.server.lifespan import SANDBOX_LINE, AppState
from prolific_mcp.server.outputs import safe_data, safe_text
from prolific_mcp.settings import StateDirError


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


async def _structured(result: Awaitable[Result]) -> object:
    return structured(await result)


def register_resources(mcp: MCPServer, holder: AppState) -> None:
    """Add the resources, the dataset-id completions and the `import_dataset` prompt."""

    async def guarded(uri: str, make: Callable[[Deps], Awaitable[object]]) -> str:
        """Read through the service; a missing dataset or import is ResourceNotFound, other failures say why."""
        try:
            service = await holder.get()
            value = await make(service)
        except NotFoundError as exc:
            raise ResourceNotFoundError(f"{uri}: {safe_text(render.error_text(exc))}") from None
        except (OperationError, ProlificError, InvalidIdError, StateDirError) as exc:
            raise ResourceError(f"{uri}: {safe_text(render.error_text(exc))}") from None
        # The tools' output filter: nothing invisible, no secret, whatever Prolific or a file put in the value.
        return safe_text(value) if isinstance(value, str) else _json(safe_data(value))

    def listing(uri: str, name: str, title: str, description: str, read: Callable[[Deps], Awaitable[Result]]) -> None:
        """A resource without parameters: one list operation's structured result, as JSON."""

        async def read_list() -> str:
            return await guarded(uri, lambda d: _structured(read(d)))

        mcp.resource(uri, name=name, title=title, description=description, mime_type="application/json")(read_list)

    listing(
        "prolific://workspaces",
        "workspaces",
        "Prolific workspaces",
        "The workspaces of this account (JSON).",
        ops.list_workspaces,
    )
    listing(
        "prolific://datasets",
        "datasets",
        "Known datasets",
        "Datasets created or used through this server, and those attached to batches (JSON).",
        ops.list_datasets,
    )

    def per_dataset(
        suffix: str, name: str, title: str, description: str, mime_type: str, show: Callable[[DatasetResult], object]
    ) -> None:
        """A resource of one dataset (prolific://datasets/{dataset_id}<suffix>): `show` of get_dataset's result."""
        template = "prolific://datasets/{dataset_id}" + suffix

        async def read_dataset(dataset_id: str) -> str:
            async def make(service: Deps) -> object:
                return show(await ops.get_dataset(service, dataset_id))

            return await guarded(template.format(dataset_id=dataset_id), make)

        mcp.resource(template, name=name, title=title, description=description, mime_type=mime_type)(read_dataset)

    def view(result: DatasetResult) -> str:
        return f"{SANDBOX_LINE}\n\n{result.text}" if result.mode == "sandbox" else result.text

    def schema(result: DatasetResult) -> dict[str, object]:
        fields = [f.model_dump() for f in result.fields]
        return {"dataset_id": result.id, "version": result.version, "strict": result.strict, "fields": fields}

    per_dataset(
        "",
        "dataset",
        "Dataset",
        "A readable view of one dataset: version, counts, schema table, latest imports.",
        "text/markdown",
        view,
    )
    per_dataset(
        "/schema",
        "dataset-schema",
        "Dataset schema",
        "A dataset's schema (JSON): strict, and fields as a list of {key, type, label} for set_schema.",
        "application/json",
        schema,
    )

    @mcp.resource(
        "prolific://datasets/{dataset_id}/imports/{import_id}",
        name="import",
        title="Import job",
        description="One import job as Prolific reports it (JSON): status, counts, itemised errors.",
        mime_type="application/json",
    )
    async def import_job(dataset_id: str, import_id: str) -> str:
        async def make(service: Deps) -> object:
            job = await service.client.get_import(dataset_id, import_id)
            return job.model_dump(mode="json", by_alias=True)

        return await guarded(f"prolific://datasets/{dataset_id}/imports/{import_id}", make)

    @mcp.completion()  # type: ignore[no-untyped-call, untyped-decorator]
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if argument.name != "dataset_id" or holder.service is None:
            return None
        service = holder.service
        try:
            deps = service
            known = await deps.known_datasets()
        except ProlificError:
            return None
        values = [d.dataset_id for d in known if d.dataset_id.startswith(argument.value)]
        return Completion(values=values[:100], total=len(values), has_more=len(values) > 100)

    @mcp.prompt(
        name="import_dataset",
        title="Import a data file into a new dataset",
        description="Walks through suggest_schema → create_dataset → upload_file for one local file.",
    )
    def import_dataset(path: str, name: str = "") -> str:
        label = name or "a name based on the file"
        return (
            f"Import the records in {path} into a new Prolific AI Task Builder dataset called {label}.\n"
            f"1. Call suggest_schema(path={path!r}) and check the suggested field types; adjust any that are wrong "
            "(text is shown to participants; metadata is kept but hidden; task_group_id groups records).\n"
            "2. Call validate_file with those fields to see which records would be rejected, and tell me.\n"
            "3. Call create_dataset(name=..., fields=<the fields>, strict=false).\n"
            f"4. Call upload_file(dataset_id=<the new id>, path={path!r}) and keep me posted on its progress. If it "
            "returns before the import finishes, follow its next_call.\n"
            "5. Summarise the outcome for me: how many records were accepted, which were rejected and why, and "
            "where the rejected-records file is."
        )
