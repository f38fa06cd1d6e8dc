"""prolific-datasets-mcp: an MCP server for Prolific AI Task Builder datasets."""

__version__ = "0.1.0"

USER_AGENT = f"prolific-datasets-mcp/{__version__}"

__all__ = ["USER_AGENT", "__version__"]
