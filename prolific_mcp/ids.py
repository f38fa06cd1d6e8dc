"""Identifiers that end up in URL paths: validated as one safe segment, then percent-encoded."""

from __future__ import annotations

import re
from urllib.parse import quote

SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InvalidIdError(ValueError):
    """An id that cannot be one safe URL path segment."""


def check_id(value: object, kind: str = "id") -> str:
    """Return `value` if it is one safe path segment (`[A-Za-z0-9_-]{1,64}`), else raise InvalidIdError.

    The message says what was wrong and where a valid id comes from, for an agent to act on.
    """
    if not isinstance(value, str) or not SAFE_ID.fullmatch(value):
        shown = repr(value)[:80]
        raise InvalidIdError(
            f"{kind} {shown} is not a valid Prolific id: use the exact id (letters, digits, '-' or '_', "
            f"at most 64 characters) as returned by Prolific, e.g. from list_datasets or get_dataset."
        )
    return value


def path_segment(value: str) -> str:
    """Percent-encode `value` as exactly one URL path segment (a '/' becomes %2F)."""
    return quote(value, safe="")
