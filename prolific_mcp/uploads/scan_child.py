"""The child process of a background scan (`background_scan.py`): `python -m prolific_mcp.uploads.scan_child`.

Reads a `ScanInput` (descriptor, format, schema, expected size) pickled on standard input, scans the inherited
descriptor without hashing it, and writes the pickled `ScanReport` on standard output. Its progress goes to
standard error as lines `@<bytes read>` (every PROGRESS_STEP bytes), and the line `+` once the file is cleared (not
certain to fail); any other line there is a problem. It imports the scan only, so that it starts in a fraction of
the time the server takes, and runs at a lower CPU priority (niceness 10): on a busy machine the server's answers
come first.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from typing import Final

from prolific_mcp.uploads.scan import ScanInput, scan_without_hash

PROGRESS_STEP: Final = 4 * 1024 * 1024
NICENESS: Final = 10


def main() -> int:
    with contextlib.suppress(AttributeError, OSError):
        os.nice(NICENESS)
    given: ScanInput = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from our parent only
    told = 0

    def on_read(offset: int) -> None:
        nonlocal told
        if offset - told >= PROGRESS_STEP:
            told = offset
            os.write(2, b"@%d\n" % offset)

    def on_cleared() -> None:
        os.write(2, b"+\n")  # background_scan.CLEARED_LINE

    report = scan_without_hash(given, on_read, on_cleared)
    os.write(2, b"@%d\n" % report.size)
    sys.stdout.buffer.write(pickle.dumps(report))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
