"""The sandbox server: uvicorn on two loopback sockets (the API and the fake S3) in the current event loop.

`SandboxServer(config).serve(on_ready)` runs until `request_stop()`. It holds the state folder's lock file while it
runs (two sandboxes on one folder would process the same imports twice). The in-thread harness for tests is
`harness.Sandbox`; the command line is `cli.main`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import anyio
import orjson
import uvicorn

from prolific_mcp.sandbox.admin import admin_routes
from prolific_mcp.sandbox.api import Context, build_api_app
from prolific_mcp.sandbox.clock import Clock
from prolific_mcp.sandbox.config import SandboxConfig
from prolific_mcp.sandbox.faults import FaultPlan, FaultPlanError, RequestLog, parse_plan
from prolific_mcp.sandbox.gateway import Connections, Gateway, protocol_class
from prolific_mcp.sandbox.handshake import lock_within
from prolific_mcp.sandbox.jobs import Scheduler
from prolific_mcp.sandbox.rows import StoredUpload
from prolific_mcp.sandbox.s3 import S3App, Signer
from prolific_mcp.sandbox.store import Db, Store
from prolific_mcp.sandbox.traffic import ApiTraffic

log = logging.getLogger("prolific_mcp.sandbox")

HOST: Final = "127.0.0.1"
LOCK_FILENAME: Final = "sandbox.lock"
KEEP_ALIVE: Final = 30
"""Seconds an idle connection is kept. Longer than a client's pool keeps one (httpx: 5 s), so a client always
retires a connection before the sandbox closes it: with both at 5 s, a request sent just as the sandbox closed
the connection failed with "closed before the answer" (seen on an upload URL under 20 concurrent uploads)."""
SWITCH_INTERVAL: Final = 0.001
"""The sandbox process's GIL switch interval (Python's default is 5 ms). An import's worker thread holds the GIL
while it parses and validates; every API request waits for it at each hand-off (the socket, the db thread), so
with the default a 2 ms request took 7 ms while an import ran. `cli.main` sets it for a sandbox in its own
process (docs/performance.md, goal 9)."""


class SandboxStartError(RuntimeError):
    """The sandbox could not start (a port in use, an unusable state folder...); the message says why."""


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling (the sandbox decides when to stop), stopping without delay.

    Overrides `capture_signals` and `main_loop`, written against uvicorn 0.54 (whose main loop sleeps 0.1 s per tick
    and installs its own SIGINT/SIGTERM handlers).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_event = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def exit(self) -> None:
        self.should_exit = True
        self.exit_event.set()

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exit_event.wait(), 0.1)
            should_exit = await self.on_tick(counter)


@contextlib.contextmanager
def _exclusive(state_dir: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold the state folder's lock file: two sandboxes on one folder would process the same imports twice.

    `wait` > 0: wait that long for a sandbox that is stopping to let go of it (before start-up: blocking is fine).
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(state_dir / LOCK_FILENAME, "a+")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise SandboxStartError(f"cannot use the state folder {state_dir}: {exc.strerror or exc}") from None
    with handle:
        if not lock_within(handle.fileno(), wait):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SandboxStartError(
                f"the state folder {state_dir} is in use by another sandbox ({holder}): stop it, or use another "
                "--state-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _bind(port: int, what: str) -> socket.socket:
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then (else Nagle + delayed ACK
    # add 40 ms to every response on a kept-alive connection).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise SandboxStartError(f"cannot listen on {HOST}:{port} for the {what}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


class SandboxServer:
    """One sandbox run in the current event loop: state, the two ports, the import scheduler."""

    def __init__(
        self,
        config: SandboxConfig,
        *,
        clock: Clock | None = None,
        faults: FaultPlan | None = None,
        requests: RequestLog | None = None,
        traffic: ApiTraffic | None = None,
    ) -> None:
        self.config = config
        self.traffic = traffic if traffic is not None else ApiTraffic()
        self.clock = clock or Clock()
        self.faults = faults if faults is not None else FaultPlan()
        self.requests = requests if requests is not None else RequestLog()
        self.store: Store | None = None
        self.url = ""
        self.s3_url = ""
        self.workspace_id = ""
        self.user_id = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False

    def request_stop(self) -> None:
        """Ask the server to stop; safe from any thread and before it has started."""
        self._stop_requested = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

    async def serve(self, on_ready: Callable[[SandboxServer], None] | None = None) -> None:
        """Run until `request_stop()`; call `on_ready` once both ports accept requests."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            return
        with _exclusive(self.config.state_dir, self.config.lock_wait):
            await self._serve_locked(on_ready)

    async def _serve_locked(self, on_ready: Callable[[SandboxServer], None] | None) -> None:
        config = self.config
        try:
            store = Store(config.state_dir, self.clock)
        except (OSError, KeyError, ValueError, sqlite3.Error) as exc:
            raise SandboxStartError(f"cannot use the state folder {config.state_dir}: {exc}") from exc
        self.store = store
        sockets: list[socket.socket] = []
        try:
            removed = store.remove_partial_objects()
            if removed:
                log.info("removed %d incomplete upload(s) left by an earlier run", removed)
            recovered = await store.run(Db.recover, store.objects_dir)
            secret, access_key, self.user_id, self.workspace_id = await store.run(_identity)
            sockets.append(_bind(config.port, "API"))
            sockets.append(_bind(config.s3_port, "fake S3"))
            api_port, s3_port = (s.getsockname()[1] for s in sockets)
            self.url, self.s3_url = f"http://{HOST}:{api_port}", f"http://{HOST}:{s3_port}"
            scheduler = Scheduler(store, config, self.traffic)
            signer = Signer(secret, access_key)
            ctx = Context(
                config=config,
                store=store,
                scheduler=scheduler,
                signer=signer,
                clock=self.clock,
                faults=self.faults,
                requests=self.requests,
                user_id=self.user_id,
                workspace_id=self.workspace_id,
                api_url=self.url,
                s3_url=self.s3_url,
            )

            def on_queued(up: StoredUpload) -> None:
                scheduler.note_queued(up.id)
                scheduler.kick(up.dataset_pk)

            connections = Connections()
            gateway = Gateway(
                self.traffic.around(build_api_app(ctx, admin_routes(ctx))),
                S3App(store, signer, self.clock, config.max_object_size, on_queued, self.traffic),
                self.faults,
                self.requests,
                self.clock,
                connections,
            )
            gateway.api_port, gateway.s3_port = api_port, s3_port
            server = _Uvicorn(
                uvicorn.Config(
                    gateway,
                    http=protocol_class(connections),
                    lifespan="off",
                    log_config=None,
                    access_log=config.access_log,
                    server_header=False,
                    timeout_graceful_shutdown=2,
                    timeout_keep_alive=KEEP_ALIVE,
                )
            )
            await self._run(server, sockets, scheduler, gateway, recovered, on_ready)
        finally:
            for sock in sockets:
                sock.close()
            store.close()

    async def _run(
        self,
        server: _Uvicorn,
        sockets: list[socket.socket],
        scheduler: Scheduler,
        gateway: Gateway,
        recovered: list[int],
        on_ready: Callable[[SandboxServer], None] | None,
    ) -> None:
        assert self._stop is not None
        served = anyio.Event()
        failure: list[BaseException] = []

        async def run_server() -> None:
            try:
                await server.serve(sockets=sockets)
            except BaseException as exc:  # uvicorn exits with SystemExit when it cannot start
                failure.append(exc)
            finally:
                served.set()

        async with anyio.create_task_group() as tg:
            scheduler.attach(tg)
            tg.start_soon(run_server)
            # uvicorn exposes its readiness only as a flag.
            while not server.started and not served.is_set():  # noqa: ASYNC110
                await anyio.sleep(0.005)
            if not server.started:
                tg.cancel_scope.cancel()
                raise SandboxStartError(f"the HTTP server did not start: {failure[0] if failure else 'unknown'}")
            for dataset_pk in recovered:
                scheduler.kick(dataset_pk)
            log.info("sandbox ready at %s (fake S3 at %s)", self.url, self.s3_url)
            if on_ready is not None:
                on_ready(self)
            await self._stop.wait()
            gateway.closing.set()
            scheduler.stop()
            server.exit()
            await served.wait()
            tg.cancel_scope.cancel()


def _identity(db: Db) -> tuple[str, str, str, str]:
    return db.meta("s3_secret"), db.meta("s3_access_key"), db.meta("user_id"), db.default_workspace_id()


def load_fault_file(path: Path) -> FaultPlan:
    """A fault plan from a JSON file ({"faults": [...]}); FaultPlanError says what is wrong."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise FaultPlanError(f"cannot read the fault plan {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise FaultPlanError(f"the fault plan {path} is not valid JSON: {exc}") from None
    return FaultPlan(parse_plan(data))
