"""The Prolific datasets API client: knows nothing of MCP; its errors state facts. See `client.ProlificClient`."""
