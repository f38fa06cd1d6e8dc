"""The upload job itself, free of MCP: local files, the ledger, the job queue and watch, polling, rejections."""
