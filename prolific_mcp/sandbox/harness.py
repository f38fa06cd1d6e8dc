"""The sandbox in a background thread of this process (its own event loop), for tests and benchmarks.

`with Sandbox.start(state_dir=tmp_path, pace="fast") as sbx: ...` returns once both ports answer; the context
manager stops it. Production code starts the sandbox as a child process instead (`process.SandboxProcess`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from prolific_mcp.sandbox.admin import seed_batch, seed_workspace
from prolific_mcp.sandbox.clock import Clock
from prolific_mcp.sandbox.config import Pace, SandboxConfig
from prolific_mcp.sandbox.faults import FaultPlan, parse_plan
from prolific_mcp.sandbox.process import stop_then_remove
from prolific_mcp.sandbox.runtime import SandboxServer, SandboxStartError, load_fault_file
from prolific_mcp.sandbox.store import Db, Store

log = logging.getLogger("prolific_mcp.sandbox")
T = TypeVar("T")


class _FromServer(Generic[T]):
    """A read-only attribute of the sandbox's current server (`restart()` replaces the server), with its own doc."""

    def __init__(self, get: Callable[[SandboxServer], T], doc: str) -> None:
        self._get = get
        self.__doc__ = doc

    @overload
    def __get__(self, sandbox: None, owner: type[Sandbox]) -> _FromServer[T]: ...
    @overload
    def __get__(self, sandbox: Sandbox, owner: type[Sandbox]) -> T: ...
    def __get__(self, sandbox: Sandbox | None, owner: type[Sandbox]) -> _FromServer[T] | T:
        return self if sandbox is None else self._get(sandbox._server)

    def __set__(self, sandbox: Sandbox, value: T) -> None:
        raise AttributeError("a Sandbox's attributes are read-only: they are its server's")


class Sandbox(contextlib.AbstractContextManager["Sandbox", None]):
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
        faults: FaultPlan | Mapping[str, Any] | Sequence[Any] | Path | None = None,
        clock: Clock | None = None,
        timeout: float = 20.0,
        **config: Any,
    ) -> Sandbox:
        """Start a sandbox on 127.0.0.1 (ephemeral ports unless given); `state_dir=None` uses a temp folder.

        `config` takes any other `SandboxConfig` field (token, admin_token, port, s3_port, url_lifetime, ...).
        """
        owns = state_dir is None
        folder = Path(tempfile.mkdtemp(prefix="prolific-sandbox-")) if state_dir is None else Path(state_dir)
        settings = SandboxConfig(state_dir=folder, pace=Pace.parse(pace), **config)
        if isinstance(faults, Path):
            plan = load_fault_file(faults)
        elif isinstance(faults, FaultPlan):
            plan = faults
        else:
            plan = FaultPlan(parse_plan(faults) if faults is not None else ())
        sandbox = cls(SandboxServer(settings, clock=clock, faults=plan), owns_state_dir=owns)
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

    url = _FromServer(lambda s: s.url, "The API origin, e.g. http://127.0.0.1:40123 (paths start with /api/v1/).")
    s3_url = _FromServer(lambda s: s.s3_url, "The fake S3 origin.")
    admin_token = _FromServer(lambda s: s.config.admin_token, "Bearer token of the /_sandbox/ admin routes.")
    workspace_id = _FromServer(lambda s: s.workspace_id, "The seeded workspace's id (24 hex digits).")
    user_id = _FromServer(lambda s: s.user_id, "The seeded user's id (24 hex digits).")
    state_dir = _FromServer(lambda s: s.config.state_dir, "The state folder.")
    config = _FromServer(lambda s: s.config, "The sandbox's settings.")
    faults = _FromServer(lambda s: s.faults, "The live fault plan: add(), unused(), clear().")
    requests = _FromServer(lambda s: s.requests, "Every request received (admin routes excepted), oldest first.")
    clock = _FromServer(lambda s: s.clock, "The clock of URL expiry and timestamps: clock.advance(seconds).")
    traffic = _FromServer(
        lambda s: s.traffic, "The API's requests in flight, that imports step aside for: in_flight, pauses, waiting."
    )

    @property
    def legacy_workspace_id(self) -> str:
        """The seeded workspace without typed datasets: a dataset created there is V3, and a schema is refused."""
        return self._store().call(Db.legacy_workspace_id)

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
        return self._store().call(seed_batch, workspace_id, dataset_id, name, status)

    def seed_workspace(self, title: str, description: str = "", *, typed: bool = True) -> dict[str, Any]:
        """Create another workspace (to exercise pagination); returns it as the API shows it."""
        return self._store().call(seed_workspace, title, description, typed)

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

        The fault plan, request log, clock and API traffic carry over.
        """
        self.stop()
        old = self._server
        ports = (int(old.url.rsplit(":", 1)[1]), int(old.s3_url.rsplit(":", 1)[1])) if old.url else (0, 0)
        for port, s3_port in (ports, (0, 0)):
            config = replace(old.config, port=port, s3_port=s3_port)
            self._server = SandboxServer(
                config, clock=old.clock, faults=old.faults, requests=old.requests, traffic=old.traffic
            )
            try:
                self._launch(timeout)
                return self
            except SandboxStartError:
                if (port, s3_port) == (0, 0):
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop, and remove the state folder if the sandbox created it."""
        stop_then_remove(self.stop, self.state_dir if self._owns_state_dir else None)

    def __exit__(self, *exc_info: object) -> None:
        self.close()
