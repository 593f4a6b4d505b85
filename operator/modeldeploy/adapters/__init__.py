"""I/O adapters: the Kubernetes API."""
