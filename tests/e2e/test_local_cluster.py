"""The local control plane itself: it starts, serves only on loopback, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from modeldeploy_dev.cluster import ClusterError, LocalCluster, build, cache_dir
from modeldeploy_dev.testing import wait_for

pytestmark = pytest.mark.e2e


def listening_addresses(pids: set[int]) -> set[str]:
    """Local addresses of TCP sockets in LISTEN state held by `pids`, from /proc (no extra tools)."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            lines = rows.read().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                addresses.add(fields[1].split(":")[0])
    return addresses


def test_cluster_starts_serves_on_loopback_and_stops_cleanly() -> None:
    local = LocalCluster.temporary()
    local.start()
    try:
        pids = {p.pid for p in local.processes.values()}
        assert set(local.processes) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
        assert listening_addresses(pids) == {"0100007F"}, "only 127.0.0.1 (little-endian hex) is listened on"
        nodes = json.loads(local.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        assert [n["metadata"]["name"] for n in nodes] == ["kwok-node-0"]
        # RBAC is on: a service account with no bindings may not list secrets.
        local.kubectl("create", "serviceaccount", "nobody")
        denied = local.kubectl(
            "auth", "can-i", "list", "secrets", "--as=system:serviceaccount:default:nobody", check=False
        )
        assert denied.stdout.strip() == "no"
        token = local.kubectl("create", "token", "nobody").stdout.strip()
        assert token.count(".") == 2, "the service-account token signer works"
    finally:
        local.stop()
    for pid in pids:

        def exited(p: int = pid) -> bool:
            return not os.path.exists(f"/proc/{p}") or _zombie(p)

        wait_for(exited, 15, f"process {pid} to exit")
    assert not local.state_dir.exists(), "the temporary state directory is removed"


def test_cluster_up_and_down_from_separate_commands(binaries) -> None:
    """`modeldeploy-dev cluster down` stops what another process started: it cannot reap those processes, so it
    must not take their zombies for live ones, and it stops them in reverse order (an API server whose etcd is
    gone takes many seconds to exit)."""
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    dev = [sys.executable, "-m", "modeldeploy_dev", "cluster"]
    state = cache_dir() / "clusters" / name
    try:
        up = subprocess.run([*dev, "up", "--name", name], capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr
        assert f"export KUBECONFIG={state / 'kubeconfig'}" in up.stdout
        assert f"modeldeploy-dev cluster down --name {name}" in up.stdout
        status = subprocess.run([*dev, "status", "--name", name], capture_output=True, text=True, timeout=60)
        assert (status.returncode, status.stdout.splitlines()[0]) == (0, f"cluster {name!r} is running")
        pids = [int(pid) for pid in json.loads((state / "pids.json").read_text()).values()]
    finally:
        started = time.monotonic()
        down = subprocess.run([*dev, "down", "--name", name], capture_output=True, text=True, timeout=120)
        took = time.monotonic() - started
    assert down.stdout.strip() == f"cluster {name!r} stopped and removed"
    assert took < 10, f"`cluster down` took {took:.1f}s"
    assert all(not os.path.exists(f"/proc/{pid}") or _zombie(pid) for pid in pids), "every process ended"
    assert not state.exists()
    status = subprocess.run([*dev, "status", "--name", name], capture_output=True, text=True, timeout=60)
    assert (status.returncode, status.stdout.strip()) == (1, f"cluster {name!r} is not running")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] == "Z"
    except OSError:
        return True


def test_start_fails_clearly_without_binaries(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MODELDEPLOY_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ClusterError, match="modeldeploy-dev cluster build"):
        LocalCluster(tmp_path / "state").start()


def test_build_says_clearly_when_go_is_missing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MODELDEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no go here
    with pytest.raises(ClusterError, match="Go is not installed"):
        build(echo=lambda _: None)


def test_build_says_clearly_when_the_module_proxy_is_unreachable(tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.setenv("MODELDEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modcache"))
    monkeypatch.setenv("GOFLAGS", "-modcacherw")
    monkeypatch.setenv("GOPROXY", "off")
    with pytest.raises(ClusterError, match="building the control plane failed"):
        build(echo=lambda _: None)
    assert "cannot download k8s.io/kubernetes" in capfd.readouterr().err
