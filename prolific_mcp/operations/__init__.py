"""The operations behind the tools, free of MCP: one module per thing an agent does, over one `Deps`."""
