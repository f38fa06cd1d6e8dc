"""`python -m prolific_mcp` is the `prolific-datasets-mcp` command."""

from prolific_mcp.cli import main

raise SystemExit(main())
