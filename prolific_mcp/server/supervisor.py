"""The sandbox supervisor: finds or starts the shared sandbox of this state folder, watches it, and starts it again
when it is gone.

Every MCP server process on one state folder uses the same sandbox (docs/sandbox.md (One sandbox, many servers)):
- While it runs, each server holds a shared lock on `users.lock`; the sandbox exits once nobody holds it.
- Whichever server needs the sandbox first starts it, holding `start.lock` so that two never start one at once. The
  sandbox runs detached (its own session): it outlives the server that started it while others still use it.
- The others attach through `address.json`, which the sandbox writes once ready (its URL, pid and tokens).
- A watchdog checks it every `WATCHDOG_SECONDS` (its process, its address, its port; and pings it every `PING_EVERY`
  checks), and each tool call first asks `ensure_running()`: within `CONFIRMED_SECONDS` of a passed check only the
  process is looked at again (on the event loop: no thread, no connection), else the whole check runs. When its
  process has died or it stopped answering, the next call starts it again, or attaches to the one another server
  has started meanwhile; the next result says so, once.
- After a failed start the next attempt waits a little longer each time (2 s, doubling, at most a minute); calls fail
  meanwhile with `down`, which says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import logging
import math
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import anyio

from prolific_mcp.net import is_loopback_host
from prolific_mcp.sandbox.handshake import (
    START_LOCK,
    USERS_LOCK,
    SandboxAddress,
    lock_within,
    open_lock,
    read_address,
    shared_token,
)
from prolific_mcp.sandbox.process import SandboxProcess, SandboxProcessError

log = logging.getLogger("prolific_mcp.server")

WATCHDOG_SECONDS: Final = 0.5
"""How often the sandbox's process is checked (each tool call also checks it first)."""
PING_EVERY: Final = 4
"""The watchdog asks the sandbox for its info every this many checks (2 s); a busy sandbox still answers that at once
(no database work), so three missed pings (some 20 s without an answer) mean it is stuck."""
PING_TIMEOUT: Final = 5.0
MISSED_PINGS: Final = 3
"""A sandbox whose process lives but which missed this many pings in a row has stopped answering."""
CONFIRMED_SECONDS: Final = 1.0
"""A tool call trusts a passed check this recent (the watchdog makes one every WATCHDOG_SECONDS) once the sandbox's
process is seen alive: no worker thread and no connection to the sandbox per call (docs/performance.md, goal 9)."""
MAX_BACKOFF: Final = 60.0
UNREACHABLE: Final = "http://127.0.0.1:9"
"""Where the API client points while no sandbox could be started (the discard port; calls fail with `down` first)."""
START_LOCK_WAIT: Final = 90.0
"""At most this long waiting for another server to finish starting the sandbox (its start is bounded by 30 s)."""


class SandboxSupervisor:
    """The shared sandbox on `folder` as this server sees it: `address` is where it answers now, `on_moved` is told
    when that changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.address: SandboxAddress | None = None
        self.process: SandboxProcess | None = None
        """The sandbox's process when this server started it (else another server did)."""
        self.notices: list[str] = []
        """What the next tool result must also say (the sandbox was started again)."""
        self.down: str | None = None
        """Why the sandbox is down and could not be started again (tool calls fail with it until it is up)."""
        self.closing = False
        self.on_moved: Callable[[str], None] | None = None
        self._users: int | None = None
        self._lock = anyio.Lock()
        self._backoff = 0.0
        self._next_try = 0.0
        self._missed = 0
        self._confirmed = -math.inf
        """When (anyio's clock) the last whole check that passed began."""

    async def start(self) -> tuple[str, str]:
        """Join the folder's users, then attach to its sandbox or start it (off the event loop: both may wait).

        Returns the API origin and token to use. When no sandbox could be had, the origin is UNREACHABLE, calls fail
        with `down` (which says why), and later calls try again: `on_moved` then points the client at it.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        self._users = await anyio.to_thread.run_sync(self._join)
        token = await anyio.to_thread.run_sync(shared_token, self.folder)
        async with self._lock:
            await self._replace()
        if self.address is None:
            return UNREACHABLE, token
        return self.address.url, self.address.token

    async def stop(self) -> None:
        """Leave: the sandbox stops by itself once no server uses it any more."""
        self.closing = True
        if self._users is not None:
            os.close(self._users)
            self._users = None

    def take_notices(self) -> str | None:
        """The notices not yet shown, once (then forgotten)."""
        if not self.notices:
            return None
        text = " ".join(self.notices)
        self.notices.clear()
        return text

    # --- checks -----------------------------------------------------------------------------------------------------

    def _running(self) -> bool:
        """The sandbox we talk to still runs, is still the one the folder's address names, and its port takes
        connections (a worker thread: the connection may take up to a second when it is stuck)."""
        address = self.address
        return (
            address is not None
            and self._alive(address)
            and read_address(self.folder) == address
            and self._missed < MISSED_PINGS
            and _listening(address.url)
        )

    def _alive(self, address: SandboxAddress) -> bool:
        """The sandbox's process still runs (not a zombie)."""
        if self.process is not None and self.process.pid == address.pid:
            return self.process.alive()
        return _pid_alive(address.pid)

    async def _check(self) -> bool:
        """The whole check of `_running`, in a worker thread; a pass is remembered for CONFIRMED_SECONDS."""
        began = anyio.current_time()
        passed = await anyio.to_thread.run_sync(self._running)
        if passed:
            self._confirmed = began
        return passed

    def _recently_confirmed(self) -> bool:
        """A whole check passed within CONFIRMED_SECONDS, and the process it found still runs."""
        address = self.address
        return (
            address is not None
            and anyio.current_time() - self._confirmed < CONFIRMED_SECONDS
            and self._missed < MISSED_PINGS
            and self._alive(address)
        )

    async def ensure_running(self, *, thorough: bool = False) -> None:
        """If the sandbox is gone, attach to the one another server has started, or start it again, and note it for
        the next result. A restart under way is waited for, so no call goes to the old address. `thorough` (the
        watchdog): always the whole check, never a recent pass."""
        if self.closing:
            return
        recent = not thorough and self._recently_confirmed()
        if not self._lock.locked() and (recent or await self._check()):
            return
        async with self._lock:
            if self.closing or anyio.current_time() < self._next_try:
                return
            if await self._check():
                return
            await self._replace()

    async def _replace(self) -> None:
        """Attach to the folder's sandbox or start one, in place of `address` (None: there was none yet)."""
        old = self.address
        process = self.process if old is not None and self.process is not None and self.process.pid == old.pid else None
        code = None if process is None else await anyio.to_thread.run_sync(process.stop)
        said = "" if code is None else f" (exit code {code})"
        why = "stopped answering" if self._missed >= MISSED_PINGS else "stopped"
        if old is not None:
            log.warning("the sandbox process %s%s; finding or starting it again on the same state", why, said)
        try:
            address, process = await anyio.to_thread.run_sync(self._connect, old)
        except Exception as exc:
            self._backoff = min(MAX_BACKOFF, max(2.0, self._backoff * 2))
            self._next_try = anyio.current_time() + self._backoff
            what = "could not be started" if old is None else f"{why}{said} and could not be started again"
            self.down = (
                f"the local sandbox {what} ({_reason(exc)}); the server tries again in {self._backoff:.0f} s, or "
                f"restart the MCP server. Its log: {self.folder / 'sandbox.log'}"
            )
            log.error("%s", self.down)
            return
        was_down = self.down is not None
        self.down, self._backoff, self._next_try, self._missed = None, 0.0, 0.0, 0
        self.address, self.process, self._confirmed = address, process, -math.inf
        moved = old is None or address.url != old.url
        if moved and self.on_moved is not None:
            self.on_moved(address.url)
        if old is None:
            if was_down:
                log.warning("the sandbox is running at %s (state %s)", address.url, self.folder)
                self.notices.append("Note: the local sandbox could not be started at first; it is running now.")
            return
        log.warning("the sandbox is running again at %s (state %s)", address.url, self.folder)
        self.notices.append(
            f"Note: the local sandbox process had {why}{said} and was started again on the same state: datasets "
            "and imports are all still there"
            + (
                "; an upload that was being sent when it stopped needs upload_file again."
                if moved
                else ", and uploads under way carry on."
            )
        )

    async def watch(self, stop: anyio.Event) -> None:
        """Until `stop`: check the sandbox every WATCHDOG_SECONDS, ping it now and then, start it again when gone."""
        ticks = 0
        while not stop.is_set():
            with anyio.move_on_after(WATCHDOG_SECONDS):
                await stop.wait()
            if stop.is_set():
                break
            ticks += 1
            try:
                if ticks % PING_EVERY == 0 and self.address is not None and not self._lock.locked():
                    answered = await anyio.to_thread.run_sync(_answers, self.address, self.folder)
                    self._missed = 0 if answered else self._missed + 1
                await self.ensure_running(thorough=True)
            except Exception:  # the watchdog must outlive any one failure; the next tool call checks again
                log.exception("checking the sandbox process failed")
        self.closing = True  # the server is stopping: no restart from here on

    # --- attaching and starting (worker threads) ----------------------------------------------------------------------

    def _join(self) -> int:
        """A shared lock on users.lock, held until `stop()` (or until this process ends, however it ends)."""
        fd = open_lock(self.folder / USERS_LOCK)
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a sandbox that found no user is removing its address
        return fd

    def _connect(self, old: SandboxAddress | None) -> tuple[SandboxAddress, SandboxProcess | None]:
        """The folder's live sandbox, or a new one started by this server (one server at a time)."""
        found = read_address(self.folder)
        if found is not None and found != old and _answers(found, self.folder):
            return found, None
        fd = open_lock(self.folder / START_LOCK)
        try:
            if not lock_within(fd, START_LOCK_WAIT):
                raise SandboxProcessError(
                    f"another server has been starting the sandbox for over {START_LOCK_WAIT:g} s; see its log"
                )
            found = read_address(self.folder)  # another server may have started it while we waited
            if found is not None and _answers(found, self.folder):
                return found, None
            if found is not None:
                _end_hung(found.pid, self.folder)
            return self._spawn(old)
        finally:
            os.close(fd)  # releases start.lock

    def _spawn(self, old: SandboxAddress | None) -> tuple[SandboxAddress, SandboxProcess]:
        """Start the shared sandbox, on the old ports when they are still free (uploads under way carry on)."""
        token = shared_token(self.folder)
        ports = [(_port(old.url), _port(old.s3_url))] if old is not None else []
        for port, s3_port in [*ports, (0, 0)]:
            try:
                process = SandboxProcess.start(self.folder, port=port, s3_port=s3_port, token=token, shared=True)
                break
            except SandboxProcessError:
                if (port, s3_port) == (0, 0):
                    raise
        address = read_address(self.folder)
        if address is None or address.pid != process.pid:  # written before its ready line; be safe anyway
            address = SandboxAddress(process.pid, process.url, process.s3_url, token, process.admin_token)
        log.info("started the shared sandbox at %s (pid %d, state %s)", address.url, address.pid, self.folder)
        return address, process


def _reason(exc: Exception) -> str:
    """One line for the agent: the sandbox's own error line when its log has one, else the error's first line."""
    text = str(exc)
    said = [line.split("prolific sandbox: ", 1)[1] for line in text.splitlines() if "prolific sandbox: " in line]
    return (said[-1] if said else text.splitlines()[0] if text else type(exc).__name__).strip()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a sandbox whose starter died waits for its new parent to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's: not ours to use
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS): the port check in _running() tells
        return True


def _listening(url: str) -> bool:
    """Something accepts connections on the sandbox's API port (a refused connection means it is gone)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=1.0):
            return True
    except OSError:
        return False


def _answers(address: SandboxAddress, folder: Path) -> bool:
    """The sandbox at `address` answers its admin info, for this state folder (not some other program on the port).

    Plain `http.client`: loopback only, no proxy from the environment, no TLS set-up on every ping."""
    parts = urlsplit(address.url)
    if parts.scheme != "http" or not is_loopback_host(parts.hostname) or parts.port is None:
        return False
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=PING_TIMEOUT)
    try:
        connection.request("GET", "/_sandbox/info", headers={"Authorization": f"Bearer {address.admin_token}"})
        response = connection.getresponse()
        info = json.loads(response.read()) if response.status == 200 else {}
        return isinstance(info, dict) and Path(str(info.get("state_dir", ""))) == folder.resolve()
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        connection.close()


def _end_hung(pid: int, folder: Path) -> None:
    """A sandbox whose address is written but which does not answer: end it (only if it is one of ours), so a new
    one can take the state folder."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # gone already (or no /proc: the new sandbox waits for the folder's lock, then says it is in use)
    arguments = command.split(b"\0")
    if (
        b"prolific_mcp.sandbox" in arguments
        and b"--shared" in arguments
        and str(folder.resolve()).encode() in arguments
    ):
        log.warning("the sandbox (pid %d) does not answer: ending it", pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
