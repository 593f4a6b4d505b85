#!/usr/bin/env bash
# Installs what modeldeploy's tests and demo need beyond Go and Python: the Python packages, and Prometheus
# from Debian's packages (the analysis runs against a real Prometheus server).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'

if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing Prometheus (Debian package prometheus)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v prometheus >/dev/null || { echo "error: Prometheus could not be installed" >&2; exit 1; }
