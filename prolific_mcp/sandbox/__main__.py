"""`python -m prolific_mcp.sandbox [--port N] [--state-dir D] ...`: run the sandbox (see cli.main)."""

from prolific_mcp.sandbox.cli import main

raise SystemExit(main())
