"""`kubectl modeldeploy` as one executable for krew: the release workflow freezes this with PyInstaller.

It runs what the `kubectl-modeldeploy` console script of `pip install modeldeploy` runs.
"""

from modeldeploy.cli import plugin_app

if __name__ == "__main__":
    plugin_app(prog_name="kubectl modeldeploy")
