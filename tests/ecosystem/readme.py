"""The README's code blocks and shell commands, for the tests and for .ci/ecosystem.

`python tests/ecosystem/readme.py NAME [--checkout DIR]` prints one named command or configuration exactly as the
README spells it, so that CI runs the README's own text rather than a copy of it. With `--checkout DIR`, the
placeholder for the user's checkout (CHECKOUT) becomes DIR, as a user replaces it.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^[ ]*```([a-z]*)\n(.*?)^[ ]*```", re.S | re.M)
CHECKOUT = "/path/to/prolific-datasets-mcp"
"""How the README writes the folder of the user's checkout (where the first command made `.venv`)."""
SERVER = f"{CHECKOUT}/.venv/bin/prolific-datasets-mcp"
"""The server every client configuration starts today, from a checkout."""

NAMED = {
    "quickstart": "python3 -m venv .venv && ",
    "claude-add": "claude mcp add prolific-datasets --scope project -e 'PROLIFIC_TOKEN=${PROLIFIC_TOKEN:-}' -- "
    + SERVER,
    "claude-get": "claude mcp get prolific-datasets",
    "gemini-add": f"gemini mcp add -e 'PROLIFIC_TOKEN=$PROLIFIC_TOKEN' prolific-datasets {SERVER}",
    "gemini-list": "gemini mcp list",
    "codex-get": "codex mcp get prolific-datasets",
    "doctor": f"{SERVER} doctor",
    "published-claude-add": "claude mcp add prolific-datasets --scope project -e 'PROLIFIC_TOKEN=${PROLIFIC_TOKEN:-}' "
    "-- uvx prolific-datasets-mcp",
    "published-gemini-add": "gemini mcp add -e 'PROLIFIC_TOKEN=$PROLIFIC_TOKEN' prolific-datasets uvx "
    "prolific-datasets-mcp",
    "uvx-doctor": "uvx prolific-datasets-mcp doctor",
}
"""A name for each command CI runs, and how that command's line starts in the README."""

BLOCKS = {
    "claude-mcp-json": ("### Claude Code", "json"),
    "gemini-settings": ("### Gemini CLI", "json"),
    "codex-config": ("### Codex", "toml"),
}
"""A name for each configuration CI uses or compares: the heading of its section and its block's language."""


def code_blocks(text: str | None = None) -> list[tuple[str, str]]:
    """Every fenced block as (language, body), list items' indented blocks included."""
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


def section(heading: str, text: str | None = None) -> str:
    """The README's text from HEADING to the next heading of any level."""
    source = README.read_text(encoding="utf-8") if text is None else text
    start = source.index(f"\n{heading}\n") + 1
    following = re.search(r"^#{1,6} ", source[start + len(heading) :], re.M)
    return source[start : start + len(heading) + following.start()] if following else source[start:]


def block(name: str, text: str | None = None) -> str:
    """The one block of BLOCKS[name]'s language in its section."""
    heading, language = BLOCKS[name]
    bodies = [body for lang, body in code_blocks(section(heading, text)) if lang == language]
    if len(bodies) != 1:
        raise LookupError(f"README.md's {heading!r} has {len(bodies)} {language} blocks, not one")
    return bodies[0]


def with_checkout(snippet: str, checkout: str, language: str) -> str:
    """SNIPPET with the README's placeholder for the checkout replaced, quoted for the snippet's language."""
    if language == "sh":
        quoted = shlex.quote(checkout)
    elif language in ("json", "toml"):
        quoted = json.dumps(checkout)[1:-1]
    else:
        raise ValueError(language)
    return snippet.replace(CHECKOUT, quoted)


def main(argv: list[str]) -> int:
    names = [*NAMED, *BLOCKS]
    if len(argv) not in (1, 3) or argv[0] not in names or (len(argv) == 3 and argv[1] != "--checkout"):
        print(f"usage: readme.py {{{','.join(names)}}} [--checkout DIR]", file=sys.stderr)
        return 2
    name = argv[0]
    text, language = (named(name), "sh") if name in NAMED else (block(name), BLOCKS[name][1])
    if len(argv) == 3:
        text = with_checkout(text, argv[2], language)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
