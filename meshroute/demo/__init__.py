"""Local stand-ins for the quickstart: demo agents that need no network."""
