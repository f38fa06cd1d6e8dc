"""Suite-wide rules: async tests run on asyncio through anyio's plugin; under CI=true a skip fails the run."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """DESIGN §11: a test may skip only for a platform reason or a missing tool, and never in CI."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped:
        if reporter is not None:
            reporter.write_line(f"CI=true: {skipped} test(s) skipped, and a skip in CI is a failure", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
