"""Running the sandbox: the server (uvicorn on two loopback sockets), the in-thread `Sandbox`, and `main`.

`main(argv)` is the command line (`prolific-datasets-mcp sandbox ...` / `python -m prolific_mcp.sandbox`):
it prints one ready line to stdout when both ports answer, logs to stderr, and runs until SIGINT or SIGTERM
(or, with --parent-pid / --exit-on-stdin-eof, until the process that started it goes away).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import anyio
import orjson
import uvicorn

from prolific_mcp.records import RecordRules
from prolific_mcp.sandbox.app import Context, build_api_app
from prolific_mcp.sandbox.clock import Clock
from prolific_mcp.sandbox.config import DEFAULT_MAX_OBJECT_SIZE, DEFAULT_URL_LIFETIME, Pace, SandboxConfig
from prolific_mcp.sandbox.faults import FaultPlan, FaultPlanError, RequestLog, parse_plan
from prolific_mcp.sandbox.gateway import Connections, Gateway, protocol_class
from prolific_mcp.sandbox.jobs import Scheduler
from prolific_mcp.sandbox.protocol import (
    ADMIN_TOKEN_ENV,
    CONFIGURED_ADMIN,
    READY_PREFIX,
    TEMP_NOTE,
    TOKEN_ENV,
)
from prolific_mcp.sandbox.protocol import READY_LINE as READY_LINE  # re-exported: tests and docs name it here
from prolific_mcp.sandbox.s3 import S3App, Signer
from prolific_mcp.sandbox.store import Db, Store, UploadRow

log = logging.getLogger("prolific_mcp.sandbox")

HOST: Final = "127.0.0.1"
LOCK_FILENAME: Final = "sandbox.lock"


class SandboxStartError(RuntimeError):
    """The sandbox could not start (a port in use, an unusable state folder...); the message says why."""


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling (the sandbox decides when to stop), stopping without delay."""

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
def _exclusive(state_dir: Path) -> Iterator[None]:
    """Hold the state folder's lock file: two sandboxes on one folder would process the same imports twice."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(state_dir / LOCK_FILENAME, "a+")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise SandboxStartError(f"cannot use the state folder {state_dir}: {exc.strerror or exc}") from None
    with handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; best effort
            yield
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
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
    ) -> None:
        self.config = config
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
        with _exclusive(self.config.state_dir):
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
            scheduler = Scheduler(store, config)
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

            def on_queued(up: UploadRow) -> None:
                scheduler.note_queued(up.id)
                scheduler.kick(up.dataset_pk)

            connections = Connections()
            gateway = Gateway(
                build_api_app(ctx),
                S3App(store, signer, self.clock, config.max_object_size, on_queued),
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
                    timeout_keep_alive=5,
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


class Sandbox:
    """A sandbox in a background thread (own event loop) of this process, for tests.

    `Sandbox.start(...)` returns once both ports answer; use it as a context manager, which stops it.
    """

    def __init__(self, server: SandboxServer, *, owns_state_dir: bool = False) -> None:
        self._server = server
        self._owns_state_dir = owns_state_dir
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @classmethod
    def start(
        cls,
        state_dir: Path | str | None = None,
        *,
        pace: Pace | str = "default",
        token: str | None = None,
        admin_token: str | None = None,
        faults: FaultPlan | Mapping[str, Any] | Sequence[Any] | Path | None = None,
        port: int = 0,
        s3_port: int = 0,
        url_lifetime: float = DEFAULT_URL_LIFETIME,
        max_object_size: int = DEFAULT_MAX_OBJECT_SIZE,
        rules: RecordRules | None = None,
        chunk_records: int = 20_000,
        clock: Clock | None = None,
        timeout: float = 20.0,
        store_only: bool = False,
    ) -> Sandbox:
        """Start a sandbox on 127.0.0.1 (ephemeral ports unless given); `state_dir=None` uses a temp folder."""
        owns = state_dir is None
        folder = Path(tempfile.mkdtemp(prefix="prolific-sandbox-")) if state_dir is None else Path(state_dir)
        options: dict[str, Any] = {}
        if admin_token is not None:
            options["admin_token"] = admin_token
        config = SandboxConfig(
            state_dir=folder,
            pace=Pace.parse(pace),
            token=token,
            port=port,
            s3_port=s3_port,
            url_lifetime=url_lifetime,
            max_object_size=max_object_size,
            rules=rules or RecordRules(),
            chunk_records=chunk_records,
            store_only=store_only,
            **options,
        )
        if isinstance(faults, Path):
            plan = load_fault_file(faults)
        elif isinstance(faults, FaultPlan):
            plan = faults
        else:
            plan = FaultPlan(parse_plan(faults) if faults is not None else ())
        sandbox = cls(SandboxServer(config, clock=clock, faults=plan), owns_state_dir=owns)
        try:
            sandbox._launch(timeout)
        except BaseException:
            if owns:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        return sandbox

    def _launch(self, timeout: float) -> None:
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._thread_main, name="prolific-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self._server.request_stop()
            self._thread.join(5)
            raise SandboxStartError(f"the sandbox did not become ready within {timeout:g} s")
        error = self._failure()
        if error is not None:
            self._thread.join(5)
            if isinstance(error, SandboxStartError):
                raise SandboxStartError(str(error)) from None
            raise SandboxStartError(f"the sandbox failed to start: {type(error).__name__}: {error}") from error

    def _failure(self) -> BaseException | None:
        """The exception the server thread ended with, if any."""
        return self._error

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._server.serve(on_ready=lambda _: self._ready.set()))
        except BaseException as exc:
            self._error = exc
            if self._ready.is_set():
                log.exception("the sandbox stopped with an error")
        finally:
            self._ready.set()

    # what tests use -----------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API origin, e.g. http://127.0.0.1:40123 (paths start with /api/v1/)."""
        return self._server.url

    @property
    def s3_url(self) -> str:
        """The fake S3 origin."""
        return self._server.s3_url

    @property
    def admin_token(self) -> str:
        """Bearer token of the /_sandbox/ admin routes."""
        return self._server.config.admin_token

    @property
    def workspace_id(self) -> str:
        """The seeded workspace's id (24 hex digits)."""
        return self._server.workspace_id

    @property
    def user_id(self) -> str:
        """The seeded user's id (24 hex digits)."""
        return self._server.user_id

    @property
    def state_dir(self) -> Path:
        return self._server.config.state_dir

    @property
    def config(self) -> SandboxConfig:
        return self._server.config

    @property
    def faults(self) -> FaultPlan:
        """The live fault plan: add(), unused(), clear()."""
        return self._server.faults

    @property
    def requests(self) -> RequestLog:
        """Every request received (admin routes excepted), oldest first."""
        return self._server.requests

    @property
    def clock(self) -> Clock:
        """The clock of URL expiry and timestamps: clock.advance(seconds)."""
        return self._server.clock

    def _store(self) -> Store:
        store = self._server.store
        if store is None or not self.running:
            raise RuntimeError("the sandbox is not running")
        return store

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._error is None

    def seed_batch(
        self, workspace_id: str, dataset_id: str | None, *, name: str = "Sandbox batch", status: str = "UNINITIALISED"
    ) -> dict[str, Any]:
        """Create a batch (the public API we emulate has no batch creation) so list-batches has something."""
        from prolific_mcp.sandbox.views import batch_view

        def create(db: Db) -> dict[str, Any]:
            batch = db.create_batch(workspace_id, dataset_id, name, status)
            return batch_view(batch, db.datasets_by_id([dataset_id] if dataset_id else []))

        return self._store().call(create)

    def seed_workspace(self, title: str, description: str = "") -> dict[str, Any]:
        """Create another workspace (to exercise pagination); returns it as the API shows it."""
        from prolific_mcp.sandbox.views import workspace_view

        def create(db: Db) -> dict[str, Any]:
            return workspace_view(db.create_workspace(title, description), db.user())

        return self._store().call(create)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and wait for its thread; interrupted imports resume on the next start."""
        self._server.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the sandbox did not stop within {timeout:g} s")
        self._thread = None

    def restart(self, timeout: float = 20.0) -> Sandbox:
        """Stop, then start again on the same state folder (and the same ports when they are free).

        The fault plan, request log and clock carry over.
        """
        self.stop()
        old = self._server
        ports = (int(old.url.rsplit(":", 1)[1]), int(old.s3_url.rsplit(":", 1)[1])) if old.url else (0, 0)
        for port, s3_port in (ports, (0, 0)):
            config = SandboxConfig(
                state_dir=old.config.state_dir,
                pace=old.config.pace,
                token=old.config.token,
                admin_token=old.config.admin_token,
                port=port,
                s3_port=s3_port,
                url_lifetime=old.config.url_lifetime,
                max_object_size=old.config.max_object_size,
                rules=old.config.rules,
                chunk_records=old.config.chunk_records,
                access_log=old.config.access_log,
                store_only=old.config.store_only,
            )
            self._server = SandboxServer(config, clock=old.clock, faults=old.faults, requests=old.requests)
            try:
                self._launch(timeout)
                return self
            except SandboxStartError:
                if (port, s3_port) == (0, 0):
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop, and remove the state folder if the sandbox created it."""
        try:
            self.stop()
        finally:
            if self._owns_state_dir:
                shutil.rmtree(self._server.config.state_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# command line ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prolific-datasets-mcp sandbox",
        description=(
            "Run the local emulator of Prolific's AI Task Builder datasets API and its presigned-upload store "
            "(fake S3), on 127.0.0.1. Nothing reaches Prolific."
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="API port (default 0: an ephemeral port)")
    parser.add_argument("--s3-port", type=int, default=0, help="fake S3 port (default 0: an ephemeral port)")
    parser.add_argument(
        "--state-dir", type=Path, help="state folder (kept between runs); default: a fresh temporary folder"
    )
    parser.add_argument("--faults", type=Path, metavar="PLAN.json", help="a fault plan to start with (docs/sandbox.md)")
    parser.add_argument(
        "--pace",
        choices=("default", "fast"),
        default="default",
        help="default: imports stay >=0.3 s queued and >=0.5 s processing; fast: no waiting",
    )
    parser.add_argument("--token", help=f"accept only this API token (default: any non-empty token; env {TOKEN_ENV})")
    parser.add_argument(
        "--admin-token", help=f"bearer token of the /_sandbox/ admin routes (default: generated; env {ADMIN_TOKEN_ENV})"
    )
    parser.add_argument(
        "--url-lifetime", type=float, default=DEFAULT_URL_LIFETIME, help="seconds an upload URL stays valid (900)"
    )
    parser.add_argument(
        "--max-object-size", type=int, default=DEFAULT_MAX_OBJECT_SIZE, help="largest PUT in bytes (5 GiB)"
    )
    parser.add_argument(
        "--store-only",
        action="store_true",
        help="store uploaded files but never process their imports (they stay queued): for benchmarks of the wire",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument(
        "--parent-pid", type=int, help="exit when the process with this id is no longer this process's parent"
    )
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="exit when standard input is closed (the parent went away)"
    )
    return parser


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level != "debug":
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def ready_line(server: SandboxServer, *, temporary: bool, admin_generated: bool) -> str:
    """The line printed on stdout once the sandbox answers (READY_LINE parses it)."""
    note = f", {TEMP_NOTE}" if temporary else ""
    admin = server.config.admin_token if admin_generated else CONFIGURED_ADMIN
    return (
        f"{READY_PREFIX}{server.url} (fake S3 at {server.s3_url}, state in {server.config.state_dir}{note}; "
        f"admin token {admin})"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox from the command line until SIGINT/SIGTERM; 0 on a clean stop, 1 or 2 on errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    try:
        plan = load_fault_file(args.faults) if args.faults is not None else FaultPlan()
    except FaultPlanError as exc:
        print(f"prolific sandbox: {exc}", file=sys.stderr)
        return 2
    temporary = args.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="prolific-sandbox-")) if temporary else args.state_dir
    admin_token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None
    options: dict[str, Any] = {} if admin_token is None else {"admin_token": admin_token}
    try:
        config = SandboxConfig(
            state_dir=state_dir.resolve(),
            pace=Pace.parse(args.pace),
            token=args.token or os.environ.get(TOKEN_ENV) or None,
            port=args.port,
            s3_port=args.s3_port,
            url_lifetime=args.url_lifetime,
            max_object_size=args.max_object_size,
            access_log=args.access_log,
            store_only=args.store_only,
            **options,
        )
    except ValueError as exc:
        print(f"prolific sandbox: {exc}", file=sys.stderr)
        return 2
    server = SandboxServer(config, faults=plan)

    def on_ready(s: SandboxServer) -> None:
        print(ready_line(s, temporary=temporary, admin_generated=admin_token is None), flush=True)

    try:
        asyncio.run(_run_cli(server, on_ready, args.parent_pid, args.exit_on_stdin_eof))
    except SandboxStartError as exc:
        print(f"prolific sandbox: {exc}", file=sys.stderr)
        return 1
    finally:
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0


async def _run_cli(
    server: SandboxServer,
    on_ready: Callable[[SandboxServer], None],
    parent_pid: int | None,
    exit_on_stdin_eof: bool,
) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, server.request_stop)
        except (NotImplementedError, RuntimeError):  # Windows
            signal.signal(sig, lambda *_: server.request_stop())
    if exit_on_stdin_eof:
        threading.Thread(target=_watch_stdin, args=(server,), name="stdin-watch", daemon=True).start()
    async with anyio.create_task_group() as tg:
        if parent_pid is not None:
            tg.start_soon(_watch_parent, server, parent_pid)
        await server.serve(on_ready)
        tg.cancel_scope.cancel()


def _watch_stdin(server: SandboxServer) -> None:
    # os.read on the descriptor: a daemon thread blocked in sys.stdin.buffer would hold its lock at exit.
    with contextlib.suppress(OSError, ValueError):
        fd = sys.stdin.fileno()
        while os.read(fd, 65536):
            pass
    log.info("standard input closed: stopping")
    server.request_stop()


async def _watch_parent(server: SandboxServer, parent_pid: int) -> None:
    # Nothing signals a parent's death to its child: poll (the stdin watch usually notices first).
    while os.getppid() == parent_pid:  # noqa: ASYNC110
        await anyio.sleep(0.5)
    log.info("parent process %d went away: stopping", parent_pid)
    server.request_stop()
