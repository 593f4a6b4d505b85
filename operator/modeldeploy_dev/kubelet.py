"""The kubelet's part of the model fetch, which KWOK leaves out: the fetch init container run as a process, and
its result reported in the pods' status.

KWOK turns a pod Running and Ready once it is scheduled and runs no container, so the `model-fetch` init
container the operator renders never runs. `FetchKubelet` runs it. For each revision of the ModelDeployments in
a namespace it reads the Deployment's pod template from the API server, runs `modelserver fetch` as a process
with that init container's environment (its `env`, over the keys of the Secrets its `envFrom` names, read from
the API server like a kubelet does) into a directory of its own, and keeps the outcome. Then it reports it in the
status of each of that revision's pods (the pods/status subresource), as a kubelet reports a terminated
container with its termination message:

    initContainerStatuses: [{name: model-fetch, ready: true, state: {terminated:
        {exitCode: 0, reason: Completed, message: '{"digest": "sha256:...", ...}'}}}]

A failed fetch is reported as a kubelet does when an init container keeps failing: the container waits in
CrashLoopBackOff with its last termination (exit code and the JSON report with "error") in `lastState`, and the
pod is not ready (Initialized, ContainersReady and Ready False, the server container waiting in
PodInitializing).

KWOK does not overwrite these patches: its pod stages (kwok-stages.yaml) match only Pending pods and pods being
deleted, and a pod is patched only once it is Running. The price is in the order of things: a pod is Ready before
its fetch is reported, where a kubelet would report the fetch first, and a failed fetch leaves the pod in phase
Running, not Pending as on a kubelet, since a Pending pod would be made Ready again by KWOK's stage.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modeldeploy_dev.stores import FetchRun, run_fetch
from modeldeploy_dev.testing import Cluster, wait_for

FETCH_CONTAINER = "model-fetch"
REVISION_LABEL = "modeldeploy.io/revision"
MANAGED = "app.kubernetes.io/managed-by=modeldeploy"


@dataclass(frozen=True)
class Fetched:
    """One revision's fetch, run as its init container would run."""

    revision: str
    deployment: str
    pod_spec: dict[str, Any]
    env: dict[str, str]
    model_dir: Path
    run: FetchRun
    seconds: float

    @property
    def ok(self) -> bool:
        return self.run.code == 0

    @property
    def digest(self) -> str | None:
        value = self.run.report.get("digest")
        return value if isinstance(value, str) else None

    @property
    def error(self) -> str | None:
        value = self.run.report.get("error")
        return value if isinstance(value, str) else None

    @property
    def message(self) -> str:
        """The termination message: the JSON report, or the output's tail when the fetch wrote none."""
        if self.run.report:
            return json.dumps(self.run.report, separators=(",", ":"))
        return self.run.output[-4096:]


def init_container(pod_spec: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in pod_spec.get("initContainers") or [] if c.get("name") == FETCH_CONTAINER), None)


@dataclass
class FetchKubelet:
    """Runs each revision's fetch once and reports it in that revision's pods; a context manager (a thread)."""

    cluster: Cluster
    namespace: str
    workdir: Path
    instance: str | None = None
    """Only this ModelDeployment's pods; all of the namespace's by default."""
    fetched: dict[str, Fetched] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _reported: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> FetchKubelet:
        self._thread = threading.Thread(target=self._loop, name="fetch-kubelet", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def wait(self, revision: str, timeout: float = 60.0) -> Fetched:
        """The fetch of `revision`, once it has run."""

        def done() -> Fetched | None:
            if self.errors:
                raise AssertionError(f"the fetch kubelet failed: {self.errors[-1]}")
            return self.fetched.get(revision)

        found = wait_for(done, timeout, f"the fetch of revision {revision}")
        assert found is not None
        return found

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as error:  # reported to whoever waits, not lost in a thread
                self.errors.append(f"{type(error).__name__}: {error}")
            self._stop.wait(0.3)

    def _list(self, kind: str) -> list[dict[str, Any]]:
        selector = MANAGED + (f",app.kubernetes.io/instance={self.instance}" if self.instance else "")
        listing = self.cluster.kubectl("get", kind, "-n", self.namespace, "-l", selector, "-o", "json")
        items: list[dict[str, Any]] = json.loads(listing.stdout)["items"]
        return items

    def tick(self) -> None:
        for deployment in self._list("deployments"):
            template = deployment["spec"]["template"]
            revision = (template["metadata"].get("labels") or {}).get(REVISION_LABEL)
            if revision and revision not in self.fetched and init_container(template["spec"]) is not None:
                self.fetched[revision] = self.fetch(deployment["metadata"]["name"], revision, template["spec"])
        for pod in self._list("pods"):
            name = pod["metadata"]["name"]
            fetched = self.fetched.get((pod["metadata"].get("labels") or {}).get(REVISION_LABEL, ""))
            status = pod.get("status") or {}
            if fetched is None or name in self._reported or pod["metadata"].get("deletionTimestamp"):
                continue
            if status.get("phase") != "Running" or status.get("initContainerStatuses"):
                continue
            self.report(pod, fetched)
            self._reported.add(name)

    def container_env(self, container: dict[str, Any]) -> dict[str, str]:
        """What the container's process sees: its envFrom Secrets' keys, then its env (which wins)."""
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            secret = source.get("secretRef")
            if secret is None:
                raise ValueError(f"{FETCH_CONTAINER}: only secretRef envFrom is played here, not {source}")
            found = self.cluster.get("secret", secret["name"], self.namespace)
            if found is None:  # a kubelet would hold the pod in CreateContainerConfigError
                raise ValueError(f"{FETCH_CONTAINER}: Secret {self.namespace}/{secret['name']} not found")
            for key, value in (found.get("data") or {}).items():
                env[key] = base64.b64decode(value).decode()
        for variable in container.get("env") or []:
            if "valueFrom" in variable:
                raise ValueError(f"{FETCH_CONTAINER}: env valueFrom is not played here ({variable['name']})")
            env[variable["name"]] = variable.get("value", "")
        return env

    def fetch(self, deployment: str, revision: str, pod_spec: dict[str, Any]) -> Fetched:
        """Runs the revision's fetch init container as a process; MODEL_DIR is a directory standing in for the
        pod's volume, the report goes to a file standing in for its termination log."""
        container = init_container(pod_spec)
        assert container is not None
        env = self.container_env(container)
        model_dir = self.workdir / revision / "models"
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        run = run_fetch({**env, "MODEL_DIR": str(model_dir)}, model_dir.parent)
        seconds = time.monotonic() - started
        (model_dir.parent / "model-fetch.log").write_text(run.output)
        return Fetched(revision, deployment, pod_spec, env, model_dir, run, seconds)

    def report(self, pod: dict[str, Any], fetched: Fetched) -> None:
        """The pod's status as a kubelet would report this fetch (pods/status)."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        image = (init_container(pod["spec"]) or {}).get("image", "")
        terminated = {
            "exitCode": fetched.run.code,
            "reason": "Completed" if fetched.ok else "Error",
            "message": fetched.message,
            "startedAt": now,
            "finishedAt": now,
        }
        status: dict[str, Any]
        if fetched.ok:
            init = {"name": FETCH_CONTAINER, "image": image, "imageID": "", "ready": True, "restartCount": 0}
            status = {"initContainerStatuses": [{**init, "started": False, "state": {"terminated": terminated}}]}
        else:
            back_off = f"back-off restarting failed container {FETCH_CONTAINER} in pod {pod['metadata']['name']}"
            init = {"name": FETCH_CONTAINER, "image": image, "imageID": "", "ready": False, "restartCount": 1}
            waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": back_off}}
            not_ready = {"status": "False", "lastTransitionTime": now}
            conditions = [
                {**c, **not_ready, "reason": "PodInitializing" if c["type"] == "Initialized" else "ContainersNotReady"}
                if c.get("type") in ("Initialized", "ContainersReady", "Ready")
                else c
                for c in (pod.get("status") or {}).get("conditions") or []
            ]
            containers = [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}},
                }
                for c in pod["spec"]["containers"]
            ]
            status = {
                "initContainerStatuses": [
                    {**init, "started": False, "state": waiting, "lastState": {"terminated": terminated}}
                ],
                "containerStatuses": containers,
                "conditions": conditions,
            }
        self.cluster.kubectl(
            "patch",
            "pod",
            pod["metadata"]["name"],
            "-n",
            self.namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
