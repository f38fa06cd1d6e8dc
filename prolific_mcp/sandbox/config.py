"""Settings of one sandbox: where it keeps state, how fast imports move, what it enforces."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from prolific_mcp.records import RecordRules

GIB: Final = 1024**3
DEFAULT_URL_LIFETIME: Final = 15 * 60.0
"""Presigned upload URLs live 15 minutes (docs/prolific-api.md)."""
DEFAULT_MAX_OBJECT_SIZE: Final = 5 * GIB
"""S3's limit for a single PUT."""
MAX_APPEND_RECORDS: Final = 1000
"""Append-datapoints takes at most this many records per request (docs/prolific-api.md)."""
MAX_ERRORS: Final = 1000
"""An import or migration lists at most this many errors; the counts stay exact (docs/prolific-api.md)."""
MAX_APPEND_BYTES: Final = 16 * 1024 * 1024
"""Largest append-datapoints body accepted (1,000 records of up to ~16 KiB each)."""


@dataclass(frozen=True, slots=True)
class Pace:
    """How long an import stays in each non-terminal status at least (docs/prolific-api.md), in real seconds.

    `queued` and `processing` are minimum durations, so a client polling every 0.2 s sees each status.
    `records_per_second`, when set, caps the processing rate, so progress (`processed_offset`) can be watched
    and an import interrupted mid-way; None means as fast as the machine goes.
    """

    queued: float = 0.3
    processing: float = 0.5
    records_per_second: float | None = None

    @classmethod
    def parse(cls, value: Pace | str) -> Pace:
        """A Pace from a Pace or a name: 'default' (0.3 s queued, 0.5 s processing) or 'fast' (no waiting)."""
        if isinstance(value, Pace):
            return value
        if value == "default":
            return cls()
        if value == "fast":
            return cls(queued=0.0, processing=0.0)
        raise ValueError(f"unknown pace {value!r}: use 'default' or 'fast'")

    @property
    def name(self) -> str:
        """'default', 'fast' or a description of a custom pace."""
        if self == Pace():
            return "default"
        if self == Pace(0.0, 0.0):
            return "fast"
        rate = "" if self.records_per_second is None else f", {self.records_per_second:g} records/s"
        return f"custom ({self.queued:g} s queued, {self.processing:g} s processing{rate})"


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Everything a sandbox run needs; the state folder is the only thing that persists between runs."""

    state_dir: Path
    pace: Pace = field(default_factory=Pace)
    token: str | None = None
    """When set, the only API token accepted; otherwise any non-empty `Token <x>` is (docs/prolific-api.md)."""
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    """Bearer token of the `/_sandbox/` admin routes."""
    port: int = 0
    s3_port: int = 0
    url_lifetime: float = DEFAULT_URL_LIFETIME
    max_object_size: int = DEFAULT_MAX_OBJECT_SIZE
    rules: RecordRules = field(default_factory=RecordRules)
    chunk_records: int = 20_000
    """Records per committed chunk while an import is processed."""
    workers: int = 2
    """How many imports and migrations are processed at once, across datasets; the others stay `queued` until one
    ends. Their record work shares one interpreter lock, so more at once only slows each one and the API's answers;
    two keep one long import from holding up every other dataset (docs/sandbox.md, Imports at once)."""
    access_log: bool = False
    store_only: bool = False
    """The fake S3 stores each PUT and its import turns `queued`, but no import is ever processed: a benchmark of
    the wire keeps the sandbox's import work out of its figures (docs/sandbox.md)."""
    lock_wait: float = 0.0
    """Seconds to wait for the state folder's lock (held by a sandbox that is stopping) before giving up."""

    def __post_init__(self) -> None:
        if self.token is not None and not self.token.strip():
            raise ValueError("the sandbox API token must not be empty (leave it unset to accept any token)")
        if not self.admin_token.strip():
            raise ValueError("the sandbox admin token must not be empty")
        if self.url_lifetime <= 0:
            raise ValueError("the upload URL lifetime must be positive")
        if self.max_object_size <= 0:
            raise ValueError("the largest object size must be positive")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")
        for name, port in (("port", self.port), ("s3_port", self.s3_port)):
            if not 0 <= port <= 65535:
                raise ValueError(f"{name} must be between 0 and 65535, not {port}")
