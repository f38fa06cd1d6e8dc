"""A local emulator of Prolific's AI Task Builder datasets API and its presigned-upload store (fake S3).

In-process (tests): `with Sandbox.start(state_dir=tmp_path, pace="fast") as sbx: ...`.
As a child process (production): `SandboxProcess.start(...)`. From the shell: `python -m prolific_mcp.sandbox`.
See docs/sandbox.md.

The names below are imported on first use: the MCP server only starts the child (`sandbox.process`), and
importing the whole emulator for that would slow its start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prolific_mcp.sandbox.cli import main
    from prolific_mcp.sandbox.clock import Clock
    from prolific_mcp.sandbox.config import Pace, SandboxConfig
    from prolific_mcp.sandbox.faults import FaultPlan, FaultPlanError, FaultRule, RequestLog, RequestRecord
    from prolific_mcp.sandbox.harness import Sandbox
    from prolific_mcp.sandbox.process import SandboxProcess, SandboxProcessError
    from prolific_mcp.sandbox.runtime import SandboxServer, SandboxStartError

_WHERE = {
    "Clock": "clock",
    "Pace": "config",
    "SandboxConfig": "config",
    "FaultPlan": "faults",
    "FaultPlanError": "faults",
    "FaultRule": "faults",
    "RequestLog": "faults",
    "RequestRecord": "faults",
    "SandboxProcess": "process",
    "SandboxProcessError": "process",
    "Sandbox": "harness",
    "SandboxServer": "runtime",
    "SandboxStartError": "runtime",
    "main": "cli",
}

__all__ = [
    "Clock",
    "FaultPlan",
    "FaultPlanError",
    "FaultRule",
    "Pace",
    "RequestLog",
    "RequestRecord",
    "Sandbox",
    "SandboxConfig",
    "SandboxProcess",
    "SandboxProcessError",
    "SandboxServer",
    "SandboxStartError",
    "main",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
