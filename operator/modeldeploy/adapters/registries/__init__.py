"""Model registries that resolve a `models:/` source to a pinned version and download URI."""
