#!/usr/bin/env bash
# Installs what modeldeploy's tests and demo need beyond Go and Python:
#   - the project's virtual environment .venv (created with `python3 -m venv` if missing), holding every package
#     pinned in requirements/dev.lock (the runtime dependencies, the extras and the `dev` dependency group), the
#     package itself in editable mode, and the development tools `modeldeploy_dev` (not in the package's wheel:
#     a .pth file puts operator/ on the path, and .venv/bin/modeldeploy-dev runs them);
#   - Prometheus and shellcheck from Debian's packages (the analysis runs against a real Prometheus server;
#     actionlint runs shellcheck on the workflows' scripts).
# Nothing is installed into the machine's own Python. With --python-only, only the virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
LOCK=requirements/dev.lock
die() { echo "error: $*" >&2; exit 1; }
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

if [ ! -x "$VENV/bin/python" ]; then
  command -v python3 >/dev/null || die "Python >= 3.11 is needed (python3 is not installed)"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python >= 3.11 is needed (python3 is $(python3 --version 2>&1))"
  echo "creating the virtual environment $VENV"
  if ! python3 -m venv "$VENV"; then
    # Debian's python3 leaves venv's pip bootstrap to a separate package.
    rm -rf "$VENV"
    command -v apt-get >/dev/null || die "python3 -m venv failed; install Python's venv module"
    echo "installing python3-venv (Debian package)"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
fi

# Reinstall only when the dependencies or the lock changed since the last install into this environment.
stamp="$VENV/.modeldeploy-installed"
wanted=$(cat pyproject.toml "$LOCK" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "installing the Python packages into $VENV (pinned by $LOCK)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$LOCK"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$PWD/operator" > "$site/modeldeploy-dev-tools.pth"
  cat > "$VENV/bin/modeldeploy-dev" <<SCRIPT
#!$PWD/$VENV/bin/python
from modeldeploy_dev.cli import app

app(prog_name="modeldeploy-dev")
SCRIPT
  chmod +x "$VENV/bin/modeldeploy-dev"
  echo "$wanted" > "$stamp"
fi

# The pipeline tools the examples are checked with (kfp needs kubernetes < 31: an environment of its own).
PIPELINES=.venv-pipelines
PIPELINES_LOCK=requirements/pipelines.lock
pipelines_stamp="$PIPELINES/.modeldeploy-installed"
pipelines_wanted=$(sha256sum "$PIPELINES_LOCK" | cut -d' ' -f1)
if [ "$(cat "$pipelines_stamp" 2>/dev/null)" != "$pipelines_wanted" ]; then
  echo "installing the pipeline tools into $PIPELINES (pinned by $PIPELINES_LOCK)"
  [ -x "$PIPELINES/bin/python" ] || python3 -m venv "$PIPELINES"
  "$PIPELINES/bin/python" -m pip install --quiet --disable-pip-version-check -r "$PIPELINES_LOCK"
  echo "$pipelines_wanted" > "$pipelines_stamp"
fi

[ "${1:-}" = "--python-only" ] && exit 0

# Debian packages: Prometheus (the analysis runs against a real server) and shellcheck (actionlint runs it on the
# workflows' scripts, as on GitHub's runners).
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v prometheus >/dev/null || die "Prometheus could not be installed"
command -v shellcheck >/dev/null || die "shellcheck could not be installed"
