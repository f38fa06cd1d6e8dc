"""The reference for goal 4: the smallest MCPServer with one tool, started over stdio like the real server."""

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("minimal")


@mcp.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    mcp.run()
