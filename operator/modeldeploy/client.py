"""The Python SDK: apply a ModelDeployment, wait for its rollout's outcome, and use the manual controls.

    from modeldeploy.client import Client

    md = Client(namespace="risk")
    result = md.deploy(manifest, timeout=1800)   # apply (server-side) and wait
    if not result.ok:
        raise SystemExit(f"{result.outcome}: {result.reason}")

`wait` returns a `RolloutResult` (outcome, one-line reason, exit code), or raises `RolloutFailedError` with
`check=True`. Every error from the cluster is a `ModelDeployError` with a one-line message:
`ClusterUnreachableError`, `CRDNotInstalledError`, `ForbiddenError`, `NotFoundError`, `InvalidSpecError` (refused
at admission) or `NoAnswerError` (the operator did not answer a control in time). The `modeldeploy` command is
built on this module.

Controls are annotations on the ModelDeployment. GitOps tools (Argo CD, Flux) leave annotations they did not
write alone, and Git never has to express them. The operator records each action it handled in
`status.lastAction`, so a control can report the operator's answer.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config
from kubernetes.client.exceptions import ApiException

from modeldeploy.core import api
from modeldeploy.core.naming import ACTION_ANNOTATION, INSTANCE_LABEL, PAUSED_ANNOTATION
from modeldeploy.core.status.outcome import EXIT_CODES, RolloutOutcome, observed, progress, verdict
from modeldeploy.errors import (
    ClusterUnreachableError,
    CRDNotInstalledError,
    ForbiddenError,
    InvalidSpecError,
    ModelDeployError,
    NoAnswerError,
    NotFoundError,
)

__all__ = [
    "CRDNotInstalledError",
    "Client",
    "ClusterUnreachableError",
    "ForbiddenError",
    "InvalidSpecError",
    "ModelDeployError",
    "NoAnswerError",
    "NotFoundError",
    "RolloutFailedError",
    "RolloutOutcome",
    "RolloutResult",
    "load_manifests",
]

FIELD_MANAGER = "modeldeploy"
REQUEST_TIMEOUT = 15.0


@dataclass(frozen=True)
class RolloutResult:
    name: str
    namespace: str
    outcome: RolloutOutcome
    reason: str
    seconds: float = field(default=0.0, compare=False)
    object: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.outcome == "Succeeded"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def check(self) -> RolloutResult:
        """This result, or RolloutFailedError when the rollout did not succeed."""
        if not self.ok:
            raise RolloutFailedError(self)
        return self


class RolloutFailedError(ModelDeployError):
    def __init__(self, result: RolloutResult) -> None:
        super().__init__(f"{result.namespace}/{result.name} {result.outcome}: {result.reason}")
        self.result = result
        self.exit_code = result.exit_code


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _server_message(error: ApiException) -> str:
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return _one_line(message or error.reason or f"HTTP {error.status}")


def _details_name(error: ApiException) -> str | None:
    try:
        body = json.loads(error.body or "")
        name = (body.get("details") or {}).get("name")
    except (TypeError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def _object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ModelDeployError(f"the API server answered with {type(body).__name__}, not an object")
    return body


def load_manifests(path: str | Path) -> list[dict[str, Any]]:
    """The ModelDeployments in a YAML file ('-' reads standard input); InvalidSpecError for anything else."""
    import sys

    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
        docs = [d for d in yaml.safe_load_all(text) if d]
    except (OSError, yaml.YAMLError) as error:
        raise InvalidSpecError(f"cannot read {path}: {_one_line(str(error))}") from error
    if not docs:
        raise InvalidSpecError(f"{path} holds no ModelDeployment")
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != api.KIND or not (doc.get("metadata") or {}).get("name"):
            raise InvalidSpecError(f"{path}: every document must be a ModelDeployment with metadata.name")
    return docs


class Client:
    """A connection to one cluster (kubeconfig, context, optional impersonation) and a default namespace."""

    def __init__(
        self,
        namespace: str | None = None,
        context: str | None = None,
        kubeconfig: str | None = None,
        as_user: str | None = None,
        api_client: k8s.ApiClient | None = None,
    ) -> None:
        try:
            self.api_client = api_client or _connect(context, kubeconfig)
        except (config.ConfigException, OSError, TypeError, ValueError) as error:
            raise ModelDeployError(f"cannot load the kubeconfig: {_one_line(str(error))}") from error
        # A stopped API server answers at once (connection refused); do not retry it three times.
        self.api_client.configuration.retries = 1
        if as_user:
            self.api_client.set_default_header("Impersonate-User", as_user)  # type: ignore[no-untyped-call]
        self.host = str(self.api_client.configuration.host)
        self.namespace = namespace or default_namespace(context, kubeconfig)
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.core = k8s.CoreV1Api(self.api_client)

    # -- calls, with every failure mapped to one line ----------------------------------------------------------

    @contextmanager
    def _errors(self, what: str, name: str | None = None) -> Iterator[None]:
        try:
            yield
        except ApiException as error:
            if error.status == 0 or error.status is None:
                raise ClusterUnreachableError(f"cannot reach the API server at {self.host}: {error.reason}") from error
            message = _server_message(error)
            if error.status == 401:
                raise ForbiddenError(f"the API server at {self.host} refused the credentials: {message}") from error
            if error.status == 403:
                raise ForbiddenError(f"forbidden: {message}") from error
            if error.status == 404:
                missing = _details_name(error)
                if missing is not None and missing == name:
                    raise NotFoundError(f"{what}: not found") from error
                if missing is not None:  # e.g. the namespace
                    raise NotFoundError(f"{what}: {message}") from error
                raise CRDNotInstalledError(
                    f"the ModelDeployment CRD ({api.PLURAL}.{api.GROUP}/{api.VERSION}) is not installed in the "
                    f"cluster at {self.host}; install it with `modeldeploy crd | kubectl apply --server-side -f -`"
                ) from error
            if error.status in (400, 422):
                raise InvalidSpecError(f"{what}: refused by the API server: {message}") from error
            raise ModelDeployError(f"{what}: {message}") from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise ClusterUnreachableError(
                f"cannot reach the API server at {self.host}: {_one_line(str(reason))}"
            ) from error

    def _ns(self, namespace: str | None) -> str:
        return namespace or self.namespace

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = self._ns(namespace)
        with self._errors(f"ModelDeployment {ns}/{name}", name):
            body = self.custom.get_namespaced_custom_object(
                api.GROUP, api.VERSION, ns, api.PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
        return _object(body)

    def list_deployments(self, namespace: str | None = None, all_namespaces: bool = False) -> list[dict[str, Any]]:
        with self._errors("list ModelDeployments"):
            if all_namespaces:
                found = self.custom.list_cluster_custom_object(
                    api.GROUP, api.VERSION, api.PLURAL, _request_timeout=REQUEST_TIMEOUT
                )
            else:
                found = self.custom.list_namespaced_custom_object(
                    api.GROUP, api.VERSION, self._ns(namespace), api.PLURAL, _request_timeout=REQUEST_TIMEOUT
                )
        return list(_object(found).get("items") or [])

    def apply(self, manifest: dict[str, Any], force_conflicts: bool = False) -> dict[str, Any]:
        """Server-side apply of one ModelDeployment (field manager `modeldeploy`); the object as stored."""
        body = {**manifest, "apiVersion": f"{api.GROUP}/{api.VERSION}", "kind": api.KIND}
        metadata = dict(body.get("metadata") or {})
        ns = metadata.get("namespace") or self.namespace
        body["metadata"] = {**metadata, "namespace": ns}
        name = str(metadata.get("name") or "")
        with self._errors(f"apply ModelDeployment {ns}/{name}"):
            # Read the answer ourselves: the generated client drops the body of a 201 (the apply created it).
            response = self.custom.patch_namespaced_custom_object(
                api.GROUP,
                api.VERSION,
                ns,
                api.PLURAL,
                name,
                body,
                field_manager=FIELD_MANAGER,
                force=force_conflicts,
                _content_type="application/apply-patch+yaml",
                _request_timeout=REQUEST_TIMEOUT,
                _preload_content=False,
            )
            stored = json.loads(response.data)  # type: ignore[attr-defined]
        return _object(stored)

    def _merge_patch(self, name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._errors(f"change ModelDeployment {namespace}/{name}", name):
            patched = self.custom.patch_namespaced_custom_object(
                api.GROUP,
                api.VERSION,
                namespace,
                api.PLURAL,
                name,
                body,
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
        return _object(patched)

    # -- the rollout's outcome -------------------------------------------------------------------------------

    def wait(
        self,
        name: str,
        namespace: str | None = None,
        timeout: float = 1800.0,
        generation: int | None = None,
        check: bool = False,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 0.5,
    ) -> RolloutResult:
        """Waits for the outcome of `generation` (by default the current one): Succeeded (promoted, or nothing to
        roll out), RolledBack (by analysis, a deadline or abort), InvalidSpec, Stalled, or TimedOut. A status
        written for an earlier generation is never taken as the outcome. With `check`, RolloutFailedError unless it
        succeeded. `on_change` sees the object at every poll (for a live view)."""
        ns = self._ns(namespace)
        started = time.monotonic()
        deadline = started + timeout
        obj: dict[str, Any] = {}
        seen_version = None
        unreachable: ClusterUnreachableError | None = None
        while True:
            try:
                obj = self.get(name, ns)
                unreachable = None
            except ClusterUnreachableError as error:  # a blip of the API server is not the rollout's outcome
                unreachable = error
            if generation is None and obj:
                generation = int(obj["metadata"].get("generation") or 0)
            if obj and on_change is not None:
                on_change(obj)
            if obj and obj["metadata"].get("resourceVersion") != seen_version:
                seen_version = obj["metadata"].get("resourceVersion")
                found = verdict(obj, generation)
                if found is not None:
                    result = RolloutResult(name, ns, found.outcome, found.reason, time.monotonic() - started, obj)
                    return result.check() if check else result
            if time.monotonic() >= deadline:
                if unreachable is not None:
                    raise unreachable
                if obj and not observed(obj, generation):
                    where = f"the operator has not observed generation {generation} (is it running?)"
                else:
                    where = progress(obj)
                result = RolloutResult(
                    name, ns, "TimedOut", f"timed out after {timeout:g}s: {where}", time.monotonic() - started, obj
                )
                return result.check() if check else result
            time.sleep(min(poll, max(deadline - time.monotonic(), 0)))

    def deploy(
        self, manifest: dict[str, Any], timeout: float = 1800.0, check: bool = False, force_conflicts: bool = False
    ) -> RolloutResult:
        """Apply, then wait for the outcome of the generation just applied."""
        stored = self.apply(manifest, force_conflicts)
        meta = stored["metadata"]
        return self.wait(meta["name"], meta["namespace"], timeout, int(meta.get("generation") or 0), check)

    # -- manual controls ---------------------------------------------------------------------------------------

    def request(self, name: str, action: str, namespace: str | None = None, wait: float = 30.0) -> str:
        """Asks the operator for an action; its answer, or NoAnswerError after `wait` seconds."""
        ns = self._ns(namespace)
        self.get(name, ns)
        action_id = uuid.uuid4().hex[:12]
        body = {"action": action, "id": action_id, "by": self.whoami()}
        self._annotate(name, ns, {ACTION_ANNOTATION: json.dumps({k: v for k, v in body.items() if v})})
        deadline = time.monotonic() + wait
        while True:
            last = (self.get(name, ns).get("status") or {}).get("lastAction") or {}
            if last.get("id") == action_id:
                if last.get("action") == "invalid":
                    raise ModelDeployError(f"{action} {ns}/{name}: the operator refused it: {last.get('result')}")
                return str(last.get("result") or "done")
            if time.monotonic() >= deadline:
                raise NoAnswerError(
                    f"{action} {ns}/{name}: requested, but the operator has not answered within {wait:g}s "
                    "(is it running and serving this namespace?)"
                )
            time.sleep(0.5)

    def whoami(self) -> str | None:
        """The user the API server knows us as (SelfSubjectReview, as `kubectl auth whoami`); None if it cannot say."""
        try:
            review = k8s.AuthenticationV1Api(self.api_client).create_self_subject_review(
                k8s.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"),
                _request_timeout=REQUEST_TIMEOUT,
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError):
            return None
        user = review.status.user_info if review.status else None
        return str(user.username) if user and user.username else None

    def promote(self, name: str, namespace: str | None = None, full: bool = False, wait: float = 30.0) -> str:
        """Advance the canary one step (past a pause), or promote it fully."""
        return self.request(name, "promote-full" if full else "promote", namespace, wait)

    def abort(self, name: str, namespace: str | None = None, wait: float = 30.0) -> str:
        return self.request(name, "abort", namespace, wait)

    def retry(self, name: str, namespace: str | None = None, wait: float = 30.0) -> str:
        return self.request(name, "retry", namespace, wait)

    def pause(self, name: str, namespace: str | None = None) -> None:
        self._set_paused(name, self._ns(namespace), True)

    def resume(self, name: str, namespace: str | None = None) -> None:
        self._set_paused(name, self._ns(namespace), False)

    def history(self, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Recent revisions, newest last: revision, model, outcome, times, reason and message."""
        return list((self.get(name, namespace).get("status") or {}).get("history") or [])

    def undo(self, name: str, namespace: str | None = None) -> str:
        """Sets spec.model back to the previous good revision's model; it then goes through a canary."""
        ns = self._ns(namespace)
        entry = previous_good(self.get(name, ns))
        if entry is None:
            raise ModelDeployError(f"ModelDeployment {ns}/{name} has no earlier good revision in its history")
        model = entry["model"]
        self._merge_patch(name, ns, {"spec": {"model": {k: model[k] for k in ("name", "version", "uri")}}})
        return (
            f"spec.model set back to version {model['version']} ({model['uri']}), last good as revision "
            f"{entry['revision']}; it goes through a canary. Under GitOps, change Git instead."
        )

    def _annotate(self, name: str, namespace: str, annotations: dict[str, str | None]) -> None:
        self._merge_patch(name, namespace, {"metadata": {"annotations": annotations}})

    def _set_paused(self, name: str, namespace: str, paused: bool) -> None:
        self.get(name, namespace)
        self._annotate(name, namespace, {PAUSED_ANNOTATION: "true" if paused else None})

    # -- what `status` shows besides the object --------------------------------------------------------------

    def events(self, name: str, namespace: str | None = None, limit: int = 8) -> list[dict[str, Any]]:
        """The newest Events about the ModelDeployment, newest last."""
        ns = self._ns(namespace)
        selector = f"involvedObject.kind={api.KIND},involvedObject.name={name}"
        with self._errors(f"Events of {ns}/{name}"):
            found = self.core.list_namespaced_event(ns, field_selector=selector, _request_timeout=REQUEST_TIMEOUT)
        items = [self.api_client.sanitize_for_serialization(e) for e in found.items]  # type: ignore[no-untyped-call]
        items.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return items[-limit:]

    def pods(self, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
        ns = self._ns(namespace)
        with self._errors(f"pods of {ns}/{name}"):
            found = self.core.list_namespaced_pod(
                ns, label_selector=f"{INSTANCE_LABEL}={name}", _request_timeout=REQUEST_TIMEOUT
            )
        return [self.api_client.sanitize_for_serialization(p) for p in found.items]  # type: ignore[no-untyped-call]


def previous_good(md: dict[str, Any]) -> dict[str, Any] | None:
    """The newest history entry that served well (Deployed or Promoted) and is not the current stable."""
    status = md.get("status") or {}
    current = (status.get("stable") or {}).get("revision")
    for entry in reversed(status.get("history") or []):
        if entry["outcome"] in ("Deployed", "Promoted") and entry["revision"] != current:
            return entry  # type: ignore[no-any-return]
    return None


IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _connect(context: str | None, kubeconfig: str | None) -> k8s.ApiClient:
    """The kubeconfig's cluster; in a pod without one (an Airflow, Argo or Kubeflow step), its ServiceAccount's."""
    try:
        found: k8s.ApiClient = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        return found
    except config.ConfigException:
        if kubeconfig or context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise
    configuration = k8s.Configuration()
    config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return k8s.ApiClient(configuration)


def default_namespace(context: str | None, kubeconfig: str | None) -> str:
    """The context's namespace; in a pod without a kubeconfig, the pod's; else `default`."""
    if not kubeconfig and not context and IN_CLUSTER_NAMESPACE.exists() and not _has_kubeconfig():
        return IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        if context:
            active = next((c for c in contexts if c["name"] == context), active)
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, OSError):
        return "default"


def _has_kubeconfig() -> bool:
    paths = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
    return any(Path(p).exists() for p in paths.split(os.pathsep) if p)
