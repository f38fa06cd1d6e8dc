"""Fixtures: sandboxes in a background thread (real loopback HTTP) and plain httpx2 clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from prolific_mcp.sandbox import Pace, Sandbox

OBSERVABLE = Pace(queued=0.3, processing=0.5)
"""The default pace: imports stay queued >= 0.3 s and processing >= 0.5 s, so polling sees both."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One fast sandbox per test module (tests create their own datasets)."""
    with Sandbox.start(state_dir=tmp_path_factory.mktemp("sandbox"), pace="fast") as sandbox:
        yield sandbox


@pytest.fixture
def sbx(shared: Sandbox) -> Iterator[Sandbox]:
    """The module's sandbox with an empty fault plan, request log and clock offset."""
    shared.faults.clear()
    shared.requests.clear()
    yield shared
    shared.faults.clear()
    shared.clock.advance(-shared.clock.offset)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox of its own, fast."""
    with Sandbox.start(state_dir=tmp_path / "state", pace="fast") as sandbox:
        yield sandbox


@pytest.fixture
def paced(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox of its own at the observable (default) pace."""
    with Sandbox.start(state_dir=tmp_path / "paced", pace=OBSERVABLE) as sandbox:
        yield sandbox


TOKEN = "test-token"


def client(sandbox: Sandbox, token: str | None = TOKEN) -> httpx2.Client:
    headers = {"Authorization": f"Token {token}"} if token else {}
    return httpx2.Client(base_url=sandbox.url, headers=headers, timeout=10)


@pytest.fixture
def api(sbx: Sandbox) -> Iterator[httpx2.Client]:
    with client(sbx) as c:
        yield c


@pytest.fixture
def fresh_api(fresh: Sandbox) -> Iterator[httpx2.Client]:
    with client(fresh) as c:
        yield c


@pytest.fixture
def paced_api(paced: Sandbox) -> Iterator[httpx2.Client]:
    with client(paced) as c:
        yield c
