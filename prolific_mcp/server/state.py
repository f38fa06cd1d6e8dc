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
from prolific_mcp.operations.results import Mode
from prolific_mcp.uploads.jobs import UploadManager
from prolific_mcp.uploads.service import DatasetService, OperationError, ServiceOptions

log = logging.getLogger("prolific_mcp.server")

SANDBOX_LINE = "SANDBOX: nothing here reaches Prolific."
SANDBOX_ORIGIN = "sandbox"
"""The ledger's origin in sandbox mode: stable across restarts, whatever port the sandbox gets."""
WATCHDOG_SECONDS = 0.5
"""How often the sandbox child is checked (each tool call also checks it first)."""


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
    notices: list[str] = field(default_factory=list)
    """What the next tool result must also say (the sandbox child was restarted)."""
    closing: bool = False
    restart_lock: anyio.Lock = field(default_factory=anyio.Lock)
    sandbox_down: str | None = None
    """Why the sandbox child is down and could not be started again (tool calls fail with it until it is up)."""
    restart_backoff: float = 0.0
    next_restart: float = 0.0

    async def get(self) -> DatasetService:
        """The service, once start-up has finished (the sandbox may still be starting)."""
        with anyio.move_on_after(60):
            await self.ready.wait()
        if self.service is None:
            raise OperationError(self.failure or "the server is still starting: try again in a few seconds")
        await self.check_sandbox()
        if self.sandbox_down is not None:
            raise OperationError(self.sandbox_down)
        return self.service

    def take_notices(self) -> str | None:
        """The notices not yet shown, once (then forgotten)."""
        if not self.notices:
            return None
        text = " ".join(self.notices)
        self.notices.clear()
        return text

    async def check_sandbox(self) -> None:
        """If the sandbox child process has died, start it again on the same state folder, and say so.

        The same ports are used when they are free (so uploads under way carry on); otherwise the API client is
        pointed at the new port. Called by the watchdog and before every tool call; after a failed start, the next
        attempt waits a little longer each time (up to a minute).
        """
        process = self.sandbox
        if process is None or self.closing or (process.alive() and not self.restart_lock.locked()):
            return
        async with self.restart_lock:  # a restart under way: wait for it, so no call goes to the old port
            if self.closing or process.alive() or anyio.current_time() < self.next_restart:
                return
            old_url = process.url
            code = await anyio.to_thread.run_sync(process.stop)
            log.warning("the sandbox process stopped (exit code %s); starting it again on the same state", code)
            try:
                await anyio.to_thread.run_sync(process.restart)
            except Exception as exc:
                self.restart_backoff = min(60.0, max(2.0, self.restart_backoff * 2))
                self.next_restart = anyio.current_time() + self.restart_backoff
                self.sandbox_down = (
                    f"the local sandbox stopped (exit code {code}) and could not be started again ({exc}); the "
                    f"server tries again in {self.restart_backoff:.0f} s, or restart the MCP server"
                )
                log.error("%s", self.sandbox_down)
                return
            self.sandbox_down, self.restart_backoff, self.next_restart = None, 0.0, 0.0
            moved = process.url != old_url
            if moved and self.service is not None:
                self.service.client.rebase(process.url)
            log.warning("the sandbox is running again at %s (state %s)", process.url, process.state_dir)
            self.notices.append(
                f"Note: the local sandbox process had stopped (exit code {code}) and was started again on the same "
                "state: datasets and imports are all still there"
                + (
                    "; an upload that was being sent when it stopped needs upload_file again."
                    if moved
                    else ", and uploads under way carry on."
                )
            )


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
            # Building the client loads TLS certificates (tens of ms): off the event loop, so start-up stays quick.
            client = await anyio.to_thread.run_sync(
                partial(ProlificClient, api_url, token, sandbox=is_loopback_url(api_url))
            )
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
        try:
            await _watch_sandbox(holder, stop)
        finally:
            holder.closing = True


async def _watch_sandbox(holder: StateHolder, stop: anyio.Event) -> None:
    """Until `stop`: restart the sandbox child whenever it dies (there is none outside sandbox mode)."""
    if holder.sandbox is None:
        await stop.wait()
        return
    while not stop.is_set():
        with anyio.move_on_after(WATCHDOG_SECONDS):
            await stop.wait()
        if not stop.is_set():
            try:
                await holder.check_sandbox()
            except Exception:  # the watchdog must outlive any one failure; the next tool call checks again
                log.exception("checking the sandbox process failed")
