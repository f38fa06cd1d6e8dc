"""The thin MCP layer: tools, resources and prompts over the upload service."""
