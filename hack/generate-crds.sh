#!/usr/bin/env bash
# Regenerates every committed copy of the CRDs from the API models (core/api): crds/, the chart and the
# kustomize base. A unit test fails while any copy is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
"$python" -m modeldeploy crd -o crds -o charts/modeldeploy/crds -o manifests/base/crds
