"""What the pods' fetch step reported (core/fetch.py), and how the reconcile turns it into status."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fake_kube import FakeKube
from modeldeploy.core.fetch import read_fetch_report
from modeldeploy.reconcile import Reconciler
from specs import valid_spec

DIGEST = "sha256:" + "ab" * 32


def pod(revision: str, *states: dict[str, Any], last: dict[str, Any] | None = None) -> dict[str, Any]:
    statuses = [{"name": "model-fetch", "state": state, **({"lastState": last} if last else {})} for state in states]
    return {
        "metadata": {"labels": {"modeldeploy.io/revision": revision}},
        "status": {"initContainerStatuses": statuses},
    }


def done(report: Any, code: int = 0) -> dict[str, Any]:
    message = report if isinstance(report, str) else json.dumps(report)
    return {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message}}


def test_a_completed_fetch_gives_its_digest() -> None:
    assert read_fetch_report([pod("r", done({"digest": DIGEST, "bytes": 10}))]).digest == DIGEST


@pytest.mark.parametrize("bad", ["sha256:short", "md5:" + "a" * 32, 42, None, "sha256:" + "A" * 64])
def test_a_digest_that_is_not_one_is_ignored(bad: Any) -> None:
    assert read_fetch_report([pod("r", done({"digest": bad}))]).digest is None


def test_a_failed_fetch_says_why_from_its_report_or_its_log() -> None:
    crashed = {"waiting": {"reason": "CrashLoopBackOff"}}
    report = read_fetch_report([pod("r", crashed, last=done({"error": "digest mismatch: spec pins sha256:1"}, 7))])
    assert report.failure == "digest mismatch: spec pins sha256:1 (exit code 7)"
    from_log = read_fetch_report([pod("r", done("Traceback ...\x1b[31mboom\x00\n", 1))])
    assert from_log.failure == "Traceback ...[31mboom (exit code 1)"
    assert len(read_fetch_report([pod("r", done("x" * 5000, 1))]).failure or "") <= 1000 + len(" (exit code 1)")


def test_no_report_is_no_news() -> None:
    assert read_fetch_report([{"metadata": {}, "status": {}}]) == read_fetch_report([])


def model(**extra: Any) -> dict[str, Any]:
    return {"name": "fraud-scorer", "version": "7", "uri": "s3://models/fraud/7", "format": "sklearn", **extra}


def condition(kube: FakeKube, kind: str) -> dict[str, Any] | None:
    return next((c for c in kube.md["status"]["conditions"] if c["type"] == kind), None)


def test_the_digest_the_pods_fetched_reaches_status_and_then_the_pods_are_not_read_again() -> None:
    kube = FakeKube(valid_spec(model=model(), rollout={"steps": []}))
    reconciler = Reconciler(kube)
    reconciler.reconcile("ns", "fraud-scorer")
    revision = kube.md["status"]["targetRevision"]
    kube.pods = [pod(revision, done({"digest": DIGEST}))]
    reconciler.reconcile("ns", "fraud-scorer")
    status = kube.md["status"]
    assert status["stable"]["model"]["digest"] == DIGEST
    fetched = condition(kube, "ModelFetched")
    assert fetched is not None
    assert (fetched["status"], fetched["message"]) == ("True", f"revision {revision}: {DIGEST}")
    reads = len(kube.reads)
    reconciler.reconcile("ns", "fraud-scorer")
    assert len(kube.reads) == reads, "a known digest of ready pods needs no pod reads"


def test_a_failing_fetch_is_a_condition_and_one_event() -> None:
    kube = FakeKube(valid_spec(model=model(digest="sha256:" + "0" * 64), rollout={"steps": []}))
    reconciler = Reconciler(kube)
    reconciler.reconcile("ns", "fraud-scorer")
    revision = kube.md["status"]["targetRevision"]
    kube.pods = [pod(revision, {"waiting": {"reason": "CrashLoopBackOff"}}, last=done({"error": "digest mismatch"}, 7))]
    for deployment in kube.objects.values():
        deployment["status"]["availableReplicas"] = 0  # the pods never start
        deployment["status"]["conditions"] = [{"type": "Available", "status": "False"}]
    reconciler.reconcile("ns", "fraud-scorer")
    reconciler.reconcile("ns", "fraud-scorer")
    fetched = condition(kube, "ModelFetched")
    assert fetched is not None
    assert (fetched["status"], fetched["reason"]) == ("False", "FetchFailed")
    assert "the model fetch failed: digest mismatch (exit code 7)" in fetched["message"]
    assert kube.events.count("ModelFetchFailed") == 1


def test_models_that_need_no_fetch_have_no_fetch_condition_and_no_pod_reads() -> None:
    kube = FakeKube(valid_spec(model=model(uri="builtin://logistic"), rollout={"steps": []}))
    reconciler = Reconciler(kube)
    for _ in range(2):
        reconciler.reconcile("ns", "fraud-scorer")
    assert condition(kube, "ModelFetched") is None
    assert ("list", "Pod") not in kube.reads
