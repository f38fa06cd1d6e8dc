"""A standalone sandbox whose imports process at most N records per second, for imports of a chosen length.

    python -m bench.slow_sandbox --state-dir DIR --records-per-second N

The `sandbox` command has no flag for a processing rate; its Python API has (`Pace.records_per_second`,
docs/sandbox.md). Otherwise the default pace (queued ≥ 0.3 s, processing ≥ 0.5 s). Prints the `sandbox` command's
ready line (with the full admin token, so the request log can be read), then serves until standard input closes.
"""

from __future__ import annotations

import argparse
import os
import sys

from prolific_mcp.sandbox import Pace, Sandbox


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--records-per-second", type=float, required=True)
    args = parser.parse_args()
    pace = Pace(records_per_second=args.records_per_second)
    with Sandbox.start(state_dir=args.state_dir, pace=pace, token=None) as sandbox:
        print(
            f"Prolific sandbox ready at {sandbox.url} (fake S3 at {sandbox.s3_url}, state in {sandbox.state_dir}; "
            f"admin token {sandbox.admin_token})",
            flush=True,
        )
        while os.read(sys.stdin.fileno(), 65536):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
