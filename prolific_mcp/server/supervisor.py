"""The sandbox supervisor: starts the sandbox child, watches it, starts it again when it is gone, and says so.

Only sandbox mode has one (docs/architecture.md (Modes and the sandbox process)). Each tool call first asks
`ensure_running()`; a watchdog task asks every `WATCHDOG_SECONDS` too. After a failed start the next attempt waits a
little longer each time (2 s, doubling, at most a minute), and calls fail meanwhile with `down`, which says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import anyio

from prolific_mcp.sandbox.process import SandboxProcess

log = logging.getLogger("prolific_mcp.server")

WATCHDOG_SECONDS = 0.5
"""How often the sandbox is checked (each tool call also checks it first)."""
MAX_BACKOFF = 60.0


class SandboxSupervisor:
    """One sandbox child process on `folder`; `url` is where it answers now, `on_moved` is told when that changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: SandboxProcess | None = None
        self.notices: list[str] = []
        """What the next tool result must also say (the sandbox was started again)."""
        self.down: str | None = None
        """Why the sandbox is down and could not be started again (tool calls fail with it until it is up)."""
        self.closing = False
        self.on_moved: Callable[[str], None] | None = None
        self._lock = anyio.Lock()
        self._backoff = 0.0
        self._next_try = 0.0

    @property
    def url(self) -> str:
        return self.process.url if self.process is not None else ""

    async def start(self) -> str:
        """Start the child (off the event loop: it waits for the ready line); returns its API origin."""
        self.process = await anyio.to_thread.run_sync(SandboxProcess.start, self.folder)
        return self.process.url

    async def stop(self) -> None:
        self.closing = True
        if self.process is not None:
            await anyio.to_thread.run_sync(self.process.stop)

    def take_notices(self) -> str | None:
        """The notices not yet shown, once (then forgotten)."""
        if not self.notices:
            return None
        text = " ".join(self.notices)
        self.notices.clear()
        return text

    async def ensure_running(self) -> None:
        """If the child has died, start it again on the same state folder, and note it for the next result.

        The same ports are used when they are free (so uploads under way carry on); otherwise `on_moved` points the
        API client at the new port. A restart under way is waited for, so no call goes to the old port.
        """
        process = self.process
        if process is None or self.closing or (process.alive() and not self._lock.locked()):
            return
        async with self._lock:
            if self.closing or process.alive() or anyio.current_time() < self._next_try:
                return
            old_url = process.url
            code = await anyio.to_thread.run_sync(process.stop)
            log.warning("the sandbox process stopped (exit code %s); starting it again on the same state", code)
            try:
                await anyio.to_thread.run_sync(process.restart)
            except Exception as exc:
                self._backoff = min(MAX_BACKOFF, max(2.0, self._backoff * 2))
                self._next_try = anyio.current_time() + self._backoff
                self.down = (
                    f"the local sandbox stopped (exit code {code}) and could not be started again ({exc}); the "
                    f"server tries again in {self._backoff:.0f} s, or restart the MCP server"
                )
                log.error("%s", self.down)
                return
            self.down, self._backoff, self._next_try = None, 0.0, 0.0
            moved = process.url != old_url
            if moved and self.on_moved is not None:
                self.on_moved(process.url)
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

    async def watch(self, stop: anyio.Event) -> None:
        """Until `stop`: check the child every WATCHDOG_SECONDS and start it again when it has died."""
        while not stop.is_set():
            with anyio.move_on_after(WATCHDOG_SECONDS):
                await stop.wait()
            if not stop.is_set():
                try:
                    await self.ensure_running()
                except Exception:  # the watchdog must outlive any one failure; the next tool call checks again
                    log.exception("checking the sandbox process failed")
        self.closing = True  # the server is stopping: no restart from here on
