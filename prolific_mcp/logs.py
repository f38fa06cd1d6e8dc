"""Logging, configured in one place for every command: stderr only (stdout carries JSON-RPC), each line with its
time and level, secrets redacted, the HTTP libraries quiet unless asked."""

from __future__ import annotations

import logging
import sys

from prolific_mcp.redaction import RedactingFilter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = ("httpx2", "httpcore2", "uvicorn.error")
"""Loggers kept at WARNING below the debug level (the SDK's request logging stays at its own level)."""


def configure_logging(level: str = "info") -> None:
    """Send every log record to stderr as `time LEVEL logger: message`; replaces any handler set before (the SDK's
    MCPServer installs its own on the root logger when it is built, so call this after building it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())  # every line, whichever logger wrote it (the SDK's included)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("prolific_mcp").setLevel(level.upper())
    if level != "debug":
        for name in QUIET:
            logging.getLogger(name).setLevel(logging.WARNING)
