"""Suite-wide rules: async tests run on asyncio through anyio's plugin; under CI=true a skip fails the run."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Property tests: a bounded, reproducible profile in CI (docs/architecture.md, Tests and support); more examples
# locally. HYPOTHESIS_PROFILE picks one explicitly (e.g. HYPOTHESIS_PROFILE=thorough for a long local run).
settings.register_profile("ci", max_examples=75, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", max_examples=150, deadline=None)
settings.register_profile("thorough", max_examples=5000, deadline=None)
_IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _IN_CI else "dev"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test may skip only for a platform reason or a missing tool, and never in CI (docs/architecture.md,
    Tests and support)."""
    if not _IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped:
        if reporter is not None:
            reporter.write_line(f"CI=true: {skipped} test(s) skipped, and a skip in CI is a failure", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
