"""The README's code blocks and shell commands, for the tests and for .ci/ecosystem.

`python tests/ecosystem/readme.py NAME` prints one named command exactly as the README spells it, so that CI runs
the README's own text rather than a copy of it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```", re.S | re.M)

NAMED = {
    "quickstart": "python3 -m venv .venv && ",
    "uvx-doctor": "uvx prolific-datasets-mcp doctor",
}
"""A name for each command CI runs, and how that command's line starts in the README."""


def code_blocks(text: str | None = None) -> list[tuple[str, str]]:
    """Every fenced block as (language, body)."""
    source = README.read_text(encoding="utf-8") if text is None else text
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(source)]


def commands(text: str | None = None) -> list[str]:
    """Every command line of the sh blocks (comments, blank lines and shown output left out)."""
    found: list[str] = []
    for language, body in code_blocks(text):
        if language != "sh":
            continue
        for raw in body.splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                found.append(line)
    return found


def named(name: str, text: str | None = None) -> str:
    """The one README command whose line starts as NAMED[name] says."""
    prefix = NAMED[name]
    matches = [c for c in commands(text) if c.startswith(prefix)]
    if len(matches) != 1:
        raise LookupError(f"README.md has {len(matches)} commands starting with {prefix!r}, not one")
    return matches[0]


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in NAMED:
        print(f"usage: readme.py {{{','.join(NAMED)}}}", file=sys.stderr)
        raise SystemExit(2)
    print(named(sys.argv[1]))
