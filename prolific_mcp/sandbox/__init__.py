"""A local emulator of Prolific's AI Task Builder datasets API and its presigned-upload store (fake S3).

In-process (tests): `with Sandbox.start(state_dir=tmp_path, pace="fast") as sbx: ...`.
As a child process (production): `SandboxProcess.start(...)`. From the shell: `python -m prolific_mcp.sandbox`.
See docs/sandbox.md.
"""

from prolific_mcp.sandbox.clock import Clock
from prolific_mcp.sandbox.config import Pace, SandboxConfig
from prolific_mcp.sandbox.faults import FaultPlan, FaultPlanError, FaultRule, RequestLog, RequestRecord
from prolific_mcp.sandbox.process import SandboxProcess, SandboxProcessError
from prolific_mcp.sandbox.server import Sandbox, SandboxServer, SandboxStartError, main

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
