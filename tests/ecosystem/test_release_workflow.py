"""The release workflow (.github/workflows/release.yml): what it runs, what it may do, and how its actions are pinned.

actionlint (in .ci/run) checks its syntax and expressions; these check the decisions it carries.
"""

from __future__ import annotations

import re
from pathlib import Path

import prolific_mcp

ROOT = Path(prolific_mcp.__file__).resolve().parents[1]
WORKFLOW = (ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
CI_RUN = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def job(name: str) -> str:
    """The text of one job, from its key to the next job's."""
    match = re.search(rf"^  {re.escape(name)}:\n(.*?)(?=^  [a-z][a-z-]*:\n|\Z)", WORKFLOW, re.S | re.M)
    assert match, f"no job {name!r}"
    return match.group(1)


def test_it_runs_on_version_tags_only() -> None:
    assert re.search(r'^on:\n  push:\n    tags: \["v\*"\]\n\n', WORKFLOW, re.M)


def test_every_action_is_pinned_to_an_exact_version() -> None:
    uses = re.findall(r"uses: (\S+)", WORKFLOW)
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+\.\d+\.\d+", action), f"{action} is not pinned to vX.Y.Z"
    assert re.search(r"^  MCP_PUBLISHER_VERSION: v\d+\.\d+\.\d+$", WORKFLOW, re.M)


def test_only_the_publishing_jobs_get_an_oidc_token_and_write_access_is_narrow() -> None:
    assert re.search(r"^permissions:\n  contents: read\n", WORKFLOW, re.M), "read-only by default"
    assert "id-token: write" not in job("build")
    assert "id-token: write" in job("pypi")
    assert "id-token: write" in job("mcp-registry")
    assert "contents: write" in job("github-release")
    assert WORKFLOW.count("contents: write") == 1
    assert "secrets." not in WORKFLOW, "trusted publishing and OIDC: no stored secret"


def test_the_build_job_builds_and_tests_what_is_published_with_the_locked_tools() -> None:
    build = job("build")
    steps = [line.strip() for line in build.splitlines() if line.strip().startswith("run: ")]
    assert steps == [
        "run: bash .ci/venv",
        "run: npm ci --no-audit --no-fund",
        "run: bash .ci/release-build release",
        "run: bash .ci/release-test release",
    ]
    assert "TAG: ${{ github.ref_name }}" in build, "the tag must name the version"
    for script in ("venv", "release-build", "release-test"):
        assert (ROOT / ".ci" / script).is_file()
    assert "bash .ci/venv" in CI_RUN, ".ci/run installs the same way"


def test_publishing_waits_for_the_tested_build_and_pypi_comes_first() -> None:
    assert "needs: build" in job("pypi")
    assert "uses: pypa/gh-action-pypi-publish@" in job("pypi")
    assert "name: dist" in job("pypi")
    registry = job("mcp-registry")
    assert "needs: pypi" in registry, "the registry checks the package on PyPI"
    assert "./mcp-publisher login github-oidc" in registry
    assert "./mcp-publisher publish" in registry
    assert "needs: pypi" in job("github-release")


def test_actionlint_checks_it_in_ci() -> None:
    assert re.search(r'^"\$VENV/bin/actionlint" ', CI_RUN, re.M)
