"""modelserver: the reference model server for modeldeploy.

It serves a scikit-learn model over the Open Inference Protocol (v2) and exposes the Prometheus metrics that
modeldeploy's built-in analysis presets query: request totals by status code, a latency histogram and a
histogram of prediction values.
"""
