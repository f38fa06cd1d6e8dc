"""The application state the tools and resources share, created in the server's lifespan (DESIGN §2, §9)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from prolific_mcp.api.client import ProlificClient
from prolific_mcp.settings import Settings, is_loopback_url, origin_of
from prolific_mcp.uploads.ledger import Ledger
from prolific_mcp.uploads.results import Mode
from prolific_mcp.uploads.runner import UploadManager
from prolific_mcp.uploads.service import DatasetService, OperationError, ServiceOptions

log = logging.getLogger("prolific_mcp.server")

SANDBOX_LINE = "SANDBOX: nothing here reaches Prolific."
SANDBOX_ORIGIN = "sandbox"
"""The ledger's origin in sandbox mode: stable across restarts, whatever port the sandbox gets."""


@dataclass
class StateHolder:
    """Filled in by the lifespan; resources without a Context read it through the factory's closure."""

    settings: Settings
    mode: Mode
    service: DatasetService | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    failure: str | None = None
    sandbox: Any = None
    sandbox_url: str | None = None
    """A sandbox already running (tests, benchmarks): used instead of starting a child process."""

    async def get(self) -> DatasetService:
        """The service, once start-up has finished (the sandbox may still be starting)."""
        with anyio.move_on_after(60):
            await self.ready.wait()
        if self.service is None:
            raise OperationError(self.failure or "the server is still starting: try again in a few seconds")
        return self.service


def sandbox_state_dir(settings: Settings) -> Path:
    return settings.state_dir / "sandbox"


@asynccontextmanager
async def running_state(holder: StateHolder) -> AsyncIterator[StateHolder]:
    """Start the services in the background and yield at once, so `tools/list` never waits for the sandbox.

    Calls that need the services wait for `holder.ready` (StateHolder.get).
    """
    holder.service, holder.failure, holder.ready = None, None, anyio.Event()
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_run_services, holder, stop)
        try:
            yield holder
        finally:
            stop.set()


async def _run_services(holder: StateHolder, stop: anyio.Event) -> None:
    """Start the sandbox child (in sandbox mode), the API client, the ledger and the upload manager; keep them
    until `stop`, then close them in reverse order (all in this one task, as anyio task groups require)."""
    settings = holder.settings
    async with AsyncExitStack() as stack:
        try:
            if holder.mode == "sandbox":
                folder = sandbox_state_dir(settings)
                folder.mkdir(parents=True, exist_ok=True)
                if holder.sandbox_url is not None:
                    api_url = holder.sandbox_url
                else:
                    from prolific_mcp.sandbox.process import SandboxProcess

                    process = await anyio.to_thread.run_sync(partial(SandboxProcess.start, folder / "server"))
                    stack.callback(process.stop)
                    holder.sandbox = process
                    api_url = process.url
                origin = SANDBOX_ORIGIN
                token: str | None = "sandbox-token"  # noqa: S105 (the local sandbox accepts any token)
                ledger_dir = folder
            else:
                api_url, token = settings.api_url, settings.api_token
                if not token:
                    raise OperationError(
                        "PROLIFIC_MODE is 'prolific' but no token is set: set PROLIFIC_TOKEN to your Prolific API "
                        "token (Prolific app → Settings → API tokens), or use PROLIFIC_MODE=sandbox to try things out"
                    )
                origin = origin_of(api_url)
                ledger_dir = settings.state_dir_for(origin)
            client = ProlificClient(api_url, token, sandbox=is_loopback_url(api_url))
            stack.push_async_callback(client.aclose)
            ledger = Ledger(ledger_dir / "ledger.sqlite3")
            stack.callback(ledger.close)
            manager = await stack.enter_async_context(
                UploadManager(client, ledger, max_uploads=settings.max_uploads, watch_seconds=settings.max_wait_seconds)
            )
            options = ServiceOptions(
                mode=holder.mode,
                origin=origin,
                allowed_dirs=settings.effective_allowed_dirs(),
                state_dir=ledger_dir,
                default_workspace_id=settings.workspace_id,
                default_wait=settings.wait_seconds,
                max_wait=settings.max_wait_seconds,
            )
            holder.service = DatasetService(client, ledger, manager, options)
        except Exception as exc:
            holder.failure = f"the server could not start: {exc}"
            log.error("%s", holder.failure)
        finally:
            holder.ready.set()
        await stop.wait()
