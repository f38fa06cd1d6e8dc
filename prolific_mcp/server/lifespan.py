"""The application state the tools and resources share, made ready by the server's lifespan.

The SDK's idiom is a typed lifespan context; ours differs in one way: the lifespan yields at once and the services
start in a background task, so `tools/list` never waits for the sandbox child (docs/architecture.md (Transports)).
Calls that need the services wait for `AppState.ready` through `AppState.get()`. The sandbox child, in sandbox mode,
belongs to a separate `SandboxSupervisor`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio

from prolific_mcp.api.client import ProlificClient
from prolific_mcp.net import is_loopback_url, origin_of
from prolific_mcp.operations.deps import Deps, OperationError, ServiceOptions
from prolific_mcp.operations.results import Mode
from prolific_mcp.server.supervisor import SandboxSupervisor
from prolific_mcp.settings import Settings, prepare_state_dir
from prolific_mcp.uploads.jobs import UploadManager
from prolific_mcp.uploads.ledger import Ledger

log = logging.getLogger("prolific_mcp.server")

SANDBOX_LINE = "SANDBOX: nothing here reaches Prolific."
SANDBOX_ORIGIN = "sandbox"
"""The ledger's origin in sandbox mode: stable across restarts, whatever port the sandbox gets."""
READY_TIMEOUT = 60.0


@dataclass
class AppState:
    """The service once ready, or why it could not start; resources without a Context read it by closure."""

    settings: Settings
    mode: Mode
    sandbox_url: str | None = None
    """A sandbox already running (tests, benchmarks): used instead of starting a child process."""
    service: Deps | None = None
    failure: str | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    supervisor: SandboxSupervisor | None = None
    configuration_error: str | None = None
    """The configuration could not be loaded: nothing starts, and every call fails with this (and its fix)."""

    async def get(self) -> Deps:
        """The service, once start-up has finished (the sandbox may still be starting)."""
        with anyio.move_on_after(READY_TIMEOUT):
            await self.ready.wait()
        if self.service is None:
            raise OperationError(self.failure or "the server is still starting: try again in a few seconds")
        if self.supervisor is not None:
            await self.supervisor.ensure_running()
            if self.supervisor.down is not None:
                raise OperationError(self.supervisor.down)
        return self.service

    def take_notices(self) -> str | None:
        """What the next result must also say, once: the sandbox was started again; a damaged ledger was replaced."""
        notices = [
            self.supervisor.take_notices() if self.supervisor is not None else None,
            self.service.ledger.take_notice() if self.service is not None else None,
        ]
        return " ".join(n for n in notices if n) or None


def sandbox_state_dir(settings: Settings) -> Path:
    return settings.state_dir / "sandbox"


@asynccontextmanager
async def running(state: AppState) -> AsyncIterator[AppState]:
    """The lifespan: start the services in the background and yield at once; close them when the server stops."""
    state.service, state.failure, state.ready = None, state.configuration_error, anyio.Event()
    if state.configuration_error is not None:
        state.ready.set()
        yield state
        return
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_run_services, state, stop)
        try:
            yield state
        finally:
            stop.set()


async def _run_services(state: AppState, stop: anyio.Event) -> None:
    """Start the sandbox (in sandbox mode), the API client, the ledger and the upload manager; keep them until
    `stop`, then close them in reverse order (all in this one task, as anyio task groups require)."""
    async with AsyncExitStack() as stack:
        try:
            await _start(state, stack)
        except Exception as exc:
            state.failure = f"the server could not start: {exc}"
            log.error("%s", state.failure)
        finally:
            state.ready.set()
        if state.supervisor is not None:
            await state.supervisor.watch(stop)
        else:
            await stop.wait()


async def _start(state: AppState, stack: AsyncExitStack) -> None:
    settings = state.settings
    if state.mode == "sandbox":
        folder = prepare_state_dir(sandbox_state_dir(settings))  # names PROLIFIC_MCP_STATE_DIR if it cannot
        token: str | None = "sandbox-token"  # noqa: S105 (a sandbox given by URL accepts any token)
        if state.sandbox_url is not None:
            api_url = state.sandbox_url
        else:
            supervisor = SandboxSupervisor(folder / "server")
            stack.push_async_callback(supervisor.stop)
            api_url, token = await supervisor.start()
            state.supervisor = supervisor
        origin = SANDBOX_ORIGIN
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
    # Building the client loads TLS certificates (tens of ms): off the event loop, so start-up stays quick.
    client = await anyio.to_thread.run_sync(partial(ProlificClient, api_url, token, sandbox=is_loopback_url(api_url)))
    stack.push_async_callback(client.aclose)
    if state.supervisor is not None:
        state.supervisor.on_moved = client.rebase
    ledger = Ledger(ledger_dir / "ledger.sqlite3")
    stack.callback(ledger.close)
    manager = await stack.enter_async_context(
        UploadManager(client, ledger, max_uploads=settings.max_uploads, watch_seconds=settings.max_wait_seconds)
    )
    options = ServiceOptions(
        mode=state.mode,
        origin=origin,
        allowed_dirs=settings.effective_allowed_dirs(),
        state_dir=ledger_dir,
        default_workspace_id=settings.workspace_id,
        default_wait=settings.wait_seconds,
        max_wait=settings.max_wait_seconds,
    )
    state.service = Deps(client, ledger, manager, options)
