"""modeldeploy: ship ML models on Kubernetes through metric-gated canaries."""

__version__ = "0.1.0"
