"""Per-node agents (issue 10): transport.py reaches one, through the API server or directly."""
