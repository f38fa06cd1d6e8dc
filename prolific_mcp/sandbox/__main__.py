"""`python -m prolific_mcp.sandbox [--port N] [--state-dir D] ...`: run the sandbox (see server.main)."""

from prolific_mcp.sandbox.server import main

raise SystemExit(main())
