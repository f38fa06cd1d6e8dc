"""The sandbox as a child process: how production code starts and stops it (docs/sandbox.md).

`SandboxProcess.start()` runs `python -m prolific_mcp.sandbox` on ephemeral loopback ports, waits for its ready
line, and hands back the URLs. By default the child exits when this process dies: it watches its standard input
(a pipe only this process holds) for EOF and polls its parent's pid. With `shared=True` it is the shared sandbox of
the MCP servers on one state folder instead (server/supervisor.py).
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

from prolific_mcp.sandbox.handshake import ADMIN_TOKEN_ENV, READY_LINE, TOKEN_ENV

PACKAGE_ROOT: Final = Path(__file__).resolve().parents[2]
LOG_FILENAME: Final = "sandbox.log"
SHARED_LOCK_WAIT: Final = 15.0
"""How long a shared sandbox waits for one that is stopping to let go of the state folder."""


class SandboxProcessError(RuntimeError):
    """The child sandbox did not start or misbehaved; the message includes the end of its log."""


class SandboxProcess(contextlib.AbstractContextManager["SandboxProcess", None]):
    """A sandbox child process on 127.0.0.1; `url`, `s3_url`, `admin_token`, `pid`, `alive()`, `stop()`, `restart()`."""

    def __init__(
        self,
        state_dir: Path,
        *,
        pace: str = "default",
        port: int = 0,
        s3_port: int = 0,
        token: str | None = None,
        faults_file: Path | None = None,
        log_path: Path | None = None,
        ready_timeout: float = 30.0,
        python: str | None = None,
        owns_state_dir: bool = False,
        store_only: bool = False,
        shared: bool = False,
    ) -> None:
        self.state_dir = state_dir
        self.pace = pace
        self.port = port
        self.s3_port = s3_port
        self.token = token
        self.faults_file = faults_file
        self.log_path = log_path or state_dir / LOG_FILENAME
        self.ready_timeout = ready_timeout
        self.python = python or sys.executable
        self.store_only = store_only
        self.shared = shared
        """The shared sandbox of the MCP servers on this folder: detached (its own session), it outlives whoever
        started it and exits once no server holds users.lock (handshake.py); it needs `token`."""
        self.admin_token = secrets.token_urlsafe(24)
        self.url = ""
        self.s3_url = ""
        self._owns_state_dir = owns_state_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    @classmethod
    def start(cls, state_dir: Path | str | None = None, **options: Any) -> SandboxProcess:
        """Start the child and wait (at most `ready_timeout` s) until it answers; `state_dir=None`: a temp folder.

        `options` are the constructor's (pace, port, s3_port, token, faults_file, log_path, ready_timeout, python,
        store_only). `store_only=True` runs it with `--store-only` (uploads are stored, never imported: for
        benchmarks). The child's log goes to `log_path` (default: sandbox.log in the state folder), never to our
        stdout.
        """
        owns = state_dir is None
        folder = Path(tempfile.mkdtemp(prefix="prolific-sandbox-")) if state_dir is None else Path(state_dir)
        folder.mkdir(parents=True, exist_ok=True)
        proc = cls(folder.resolve(), owns_state_dir=owns, **options)
        try:
            proc._launch(proc.port, proc.s3_port)
        except BaseException:
            if owns:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        return proc

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._proc is None:
            raise SandboxProcessError("the sandbox process is not running")
        return self._proc.pid

    def alive(self) -> bool:
        """True while the child runs."""
        return self._proc is not None and self._proc.poll() is None

    def _command(self, port: int, s3_port: int) -> list[str]:
        cmd = [
            self.python,
            "-m",
            "prolific_mcp.sandbox",
            "--port",
            str(port),
            "--s3-port",
            str(s3_port),
            "--state-dir",
            str(self.state_dir),
            "--pace",
            self.pace,
        ]
        if self.shared:
            cmd += ["--shared", "--lock-wait", str(SHARED_LOCK_WAIT)]
        else:
            cmd += ["--parent-pid", str(os.getpid()), "--exit-on-stdin-eof"]
        if self.faults_file is not None:
            cmd += ["--faults", str(self.faults_file)]
        if self.store_only:
            cmd.append("--store-only")
        return cmd

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env[ADMIN_TOKEN_ENV] = self.admin_token
        env.pop(TOKEN_ENV, None)
        if self.token is not None:
            env[TOKEN_ENV] = self.token
        # The child imports the same prolific_mcp as this process, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _launch(self, port: int, s3_port: int) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._lines = queue.Queue()
        with open(self.log_path, "ab") as log_file:
            self._proc = subprocess.Popen(  # noqa: S603 (our interpreter and our own arguments)
                self._command(port, s3_port),
                stdin=subprocess.DEVNULL if self.shared else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=self._environment(),
                close_fds=True,
                start_new_session=self.shared,  # a Ctrl-C or SIGTERM to the server's process group spares it
            )
        assert self._proc.stdout is not None
        threading.Thread(
            target=_pump, args=(self._proc.stdout, self._lines), name="sandbox-stdout", daemon=True
        ).start()
        try:
            line = self._lines.get(timeout=self.ready_timeout)
        except queue.Empty:
            self.stop()
            raise SandboxProcessError(
                f"the sandbox did not print its ready line within {self.ready_timeout:g} s; {self._log_tail()}"
            ) from None
        match = READY_LINE.match(line or "")
        if match is None:
            code = self.stop()
            raise SandboxProcessError(
                f"the sandbox exited (code {code}) before it was ready; {self._log_tail()}"
                if line is None
                else f"unexpected first line from the sandbox: {line[:200]!r}; {self._log_tail()}"
            )
        self.url, self.s3_url = match["url"], match["s3_url"]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.s3_port = int(self.s3_url.rsplit(":", 1)[1])

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"no log at {self.log_path}"
        return f"the end of its log ({self.log_path}):\n" + "\n".join(text)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code (None if it was not running)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        return proc.returncode

    def restart(self) -> None:
        """Stop and start again on the same state folder, on the same ports when they are still free."""
        self.stop()
        try:
            self._launch(self.port, self.s3_port)
        except SandboxProcessError:
            self._launch(0, 0)

    def close(self) -> None:
        """Stop, and remove the state folder if this object created it."""
        stop_then_remove(self.stop, self.state_dir if self._owns_state_dir else None)

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def stop_then_remove(stop: Callable[[], object], state_dir: Path | None) -> None:
    """Stop a sandbox (in a thread or a child), then remove its state folder, if given, even when stopping failed."""
    try:
        stop()
    finally:
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)


def _pump(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
    """Hand the child's stdout lines over (the first one is the ready line) and keep the pipe drained."""
    with contextlib.suppress(OSError, ValueError):
        for raw in stream:
            lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
    lines.put(None)
