"""The lab's stand-in Kubernetes API server."""
