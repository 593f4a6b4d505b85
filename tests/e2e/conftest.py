"""Fixtures for the real control plane: a session cluster, the operator as a subprocess, a namespace per test.

By default the suite starts its own local cluster (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, KWOK) from binaries built by `modeldeploy-dev cluster build`. Set MODELDEPLOY_E2E_KUBECONFIG to
run against an existing cluster instead, e.g. one made by `kind create cluster`. The tests never skip: when the
cluster cannot start they fail and say why.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modeldeploy_dev.cluster import ClusterError, LocalCluster, bin_dir
from modeldeploy_dev.dataplane import ModelServers, PrometheusServer
from modeldeploy_dev.testing import Cluster, Operator


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    existing = os.environ.get("MODELDEPLOY_E2E_KUBECONFIG")
    local: LocalCluster | None = None
    if existing:
        kubectl = shutil.which("kubectl") or str(bin_dir() / "kubectl")
        under_test = Cluster(Path(existing), Path(existing), None, kubectl)
    else:
        request.getfixturevalue("binaries")  # built (or found in the cache) first, or the session fails here
        try:
            local = LocalCluster.temporary(nodes=2)
            started = time.monotonic()
            local.start()
            print(f"\nlocal control plane up in {time.monotonic() - started:.1f}s", file=sys.stderr)
        except ClusterError as error:
            pytest.fail(
                f"the local control plane could not start, so the end-to-end tests cannot run: {error}", pytrace=False
            )
        under_test = Cluster.of(local)
    try:
        under_test.install_crds()
    except BaseException:
        if local is not None:
            local.stop()  # never leave a half-set-up cluster running
        raise
    yield under_test
    if local is not None:
        local.stop()


@pytest.fixture(scope="session")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    with Operator(cluster, tmp_path_factory.mktemp("operator") / "operator.log") as running:
        yield running


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace that enforces the restricted Pod Security profile."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="session")
def prometheus() -> Iterator[PrometheusServer]:
    """A real Prometheus server (Debian package `prometheus`) on 127.0.0.1."""
    try:
        server = PrometheusServer()
        server.start()
    except (RuntimeError, ClusterError) as error:
        pytest.fail(f"Prometheus could not start, so the analysis tests cannot run: {error}", pytrace=False)
    yield server
    server.close()


@pytest.fixture
def servers(prometheus: PrometheusServer, namespace: str) -> Iterator[ModelServers]:
    """Reference model servers for this test's namespace, scraped by the session's Prometheus."""
    running = ModelServers(prometheus, namespace)
    yield running
    running.close()
