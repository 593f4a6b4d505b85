"""Metric analysis: what gates a canary, where the numbers come from, and what missing data means.

Where a number comes from is a metric provider. `builtin` and `query` metrics are PromQL, measured by the
Prometheus in `prometheus` (the analysis's, or a template's); a `web` metric is an HTTP endpoint that answers
JSON. Adding a provider: its settings model here, a field of that name on `AnalysisMetric` (and the name in
`ProviderName` and `AnalysisMetric.provider`), and a module in `modeldeploy.adapters.providers` with one line in
its registry.
"""

from __future__ import annotations

from typing import Literal

from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext.parser import parse as parse_json_path
from pydantic import Field, JsonValue, field_validator, model_validator

from modeldeploy.core.api.base import DNS_LABEL, DURATION, HTTP_URL, ApiModel, Rule

# An HTTP header name (an RFC 9110 token).
HEADER_NAME = r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$"
# A DNS subdomain: the name of a namespaced or cluster-scoped object.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

ProviderName = Literal["prometheus", "web"]


# A duration field that is absent (defaulted) or above zero: zero would measure (and write) as fast as it can.
_POSITIVE = "!has(self.{field}) || duration(self.{field}) > duration('0s')"


class SecretKey(ApiModel):
    name: str = Field(min_length=1, max_length=253, description="Secret in the ModelDeployment's namespace.")
    key: str = Field(min_length=1, max_length=253)


class ConfigMapKey(ApiModel):
    name: str = Field(min_length=1, max_length=253, description="ConfigMap in the ModelDeployment's namespace.")
    key: str = Field(min_length=1, max_length=253)


class HeaderSource(ApiModel):
    secret_key_ref: SecretKey = Field(description="The header's value, read from a Secret and never logged.")


class Header(ApiModel):
    """An HTTP header sent with every request, e.g. X-Scope-OrgID for a multi-tenant Prometheus."""

    rules = (Rule("has(self.value) != has(self.valueFrom)", "a header takes exactly one of value or valueFrom"),)

    name: str = Field(min_length=1, max_length=256, pattern=HEADER_NAME)
    value: str | None = Field(default=None, max_length=4096, description="The value, in the clear.")
    value_from: HeaderSource | None = Field(default=None, description="The value from a Secret.")


class Tls(ApiModel):
    """How the server's certificate is checked: the system CAs by default."""

    rules = (
        Rule(
            "[has(self.caSecret), has(self.caConfigMap), has(self.insecureSkipVerify) && self.insecureSkipVerify]"
            ".filter(x, x).size() <= 1",
            "tls takes at most one of caSecret, caConfigMap or insecureSkipVerify",
        ),
    )

    ca_secret: SecretKey | None = Field(default=None, description="PEM CA bundle in a Secret key.")
    ca_config_map: ConfigMapKey | None = Field(
        default=None, description="PEM CA bundle in a ConfigMap key (e.g. one trust-manager distributes)."
    )
    insecure_skip_verify: bool = Field(default=False, description="Do not check the certificate at all.")


class SigV4(ApiModel):
    """AWS Signature Version 4 on every request, for Amazon Managed Service for Prometheus.

    Credentials come from the AWS default chain of the operator's pod: environment variables, IRSA (web identity),
    EKS Pod Identity or ECS, then instance metadata. Needs the optional package `modeldeploy[aws]`.
    """

    region: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$", description="e.g. eu-west-1")
    service: str = Field(default="aps", min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")


class PrometheusSource(ApiModel):
    rules = (
        Rule(
            "!(has(self.bearerTokenSecret) && has(self.basicAuthSecret))",
            "prometheus takes a bearer token or basic auth, not both",
        ),
        Rule(
            "!has(self.sigv4) || (!has(self.bearerTokenSecret) && !has(self.basicAuthSecret))",
            "prometheus sigv4 signs every request itself: drop bearerTokenSecret and basicAuthSecret",
        ),
        Rule(_POSITIVE.format(field="timeout"), "prometheus.timeout must be above 0"),
    )

    address: str = Field(max_length=2048, pattern=HTTP_URL, description="e.g. http://prometheus:9090")
    timeout: str = Field(default="5s", max_length=32, pattern=DURATION, description="Per query; bounds every tick.")
    bearer_token_secret: SecretKey | None = Field(default=None, description="Bearer token read from a Secret.")
    basic_auth_secret: str | None = Field(
        default=None, max_length=253, description="Secret with keys username and password for basic auth."
    )
    headers: list[Header] = Field(
        default_factory=list,
        max_length=16,
        description="Sent with every query, e.g. X-Scope-OrgID for Mimir, Cortex or Thanos tenants.",
    )
    tls: Tls | None = Field(default=None, description="A CA bundle for a private CA, or insecureSkipVerify.")
    sigv4: SigV4 | None = Field(default=None, description="Sign requests for Amazon Managed Service for Prometheus.")


class WebMetric(ApiModel):
    """An HTTP endpoint that answers JSON; `jsonPath` points at the number (like Argo Rollouts' web metric)."""

    rules = (
        Rule("!has(self.body) || (has(self.method) && self.method == 'POST')", "web.body needs method POST"),
        Rule(_POSITIVE.format(field="timeout"), "web.timeout must be above 0"),
    )

    url: str = Field(
        max_length=2048,
        pattern=HTTP_URL,
        description="{{namespace}}, {{name}}, {{revision}}, {{track}} and {{window}} are filled in, so the canary "
        "and the stable track are asked separately.",
    )
    method: Literal["GET", "POST"] = "GET"
    headers: list[Header] = Field(default_factory=list, max_length=16, description="Sent with every request.")
    body: str | None = Field(
        default=None, max_length=8192, description="POST body (JSON); the same variables are filled in."
    )
    json_path: str = Field(
        min_length=1,
        max_length=1024,
        description="JSONPath to one number in the answer, e.g. $.accuracy or $.metrics[?(@.name=='auc')].value; "
        "true and false count as 1 and 0, numeric strings as numbers, an empty answer or no match as no data.",
    )
    timeout: str = Field(default="5s", max_length=32, pattern=DURATION, description="Per request.")
    tls: Tls | None = Field(default=None, description="A CA bundle for a private CA, or insecureSkipVerify.")

    @field_validator("json_path")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            parse_json_path(json_path_expression(value))
        except (JSONPathError, ValueError, TypeError, AttributeError) as error:
            raise ValueError(f"jsonPath {value!r} does not parse: {error}") from error
        return value


def json_path_expression(text: str) -> str:
    """Argo Rollouts and kubectl write JSONPath in braces, `{$.accuracy}`; both spellings are accepted."""
    text = text.strip()
    return text[1:-1].strip() if text.startswith("{") and text.endswith("}") else text


class Relative(ApiModel):
    """Bounds against the stable track, measured the same way over the same window."""

    rules = (
        Rule(
            "has(self.maxIncrease) || has(self.maxDecrease) || has(self.maxRatio)",
            "relative needs at least one of maxIncrease, maxDecrease or maxRatio",
        ),
    )

    max_increase: float | None = Field(default=None, description="canary - stable may be at most this.")
    max_decrease: float | None = Field(default=None, description="stable - canary may be at most this.")
    max_ratio: float | None = Field(default=None, gt=0, description="canary may be at most this times stable.")


class Critical(ApiModel):
    """A looser bound for breaches bad enough to stop at once: checked every analysis.criticalInterval, whatever
    analysis.interval is, and one breach rolls back."""

    rules = (
        Rule("has(self.min) || has(self.max)", "critical needs min or max"),
        Rule("!has(self.min) || !has(self.max) || self.min <= self.max", "critical.min must not exceed critical.max"),
    )

    min: float | None = Field(default=None, description="A value below this rolls back at once.")
    max: float | None = Field(default=None, description="A value above this rolls back at once.")


Builtin = Literal["successRate", "latencyP99", "predictionDrift", "accuracy", "meanAbsoluteError"]


class AnalysisMetric(ApiModel):
    rules = (
        Rule(
            "[has(self.builtin), has(self.query), has(self.web)].filter(x, x).size() == 1",
            "a metric is exactly one of builtin, query or web",
        ),
        Rule("has(self.min) || has(self.max) || has(self.relative)", "a metric needs a bound: min, max or relative"),
        Rule("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max"),
        Rule(_POSITIVE.format(field="window"), "a metric's window must be above 0"),
        Rule(
            "!has(self.critical) || ("
            "(!has(self.critical.min) || ((!has(self.min) || self.critical.min <= self.min) && "
            "(!has(self.max) || self.critical.min <= self.max))) && "
            "(!has(self.critical.max) || ((!has(self.max) || self.critical.max >= self.max) && "
            "(!has(self.min) || self.critical.max >= self.min))))",
            "the critical bound contradicts the metric's bound: critical.min may not be above min (or max), and "
            "critical.max may not be below max (or min); a critical bound is the looser one",
        ),
        Rule(_POSITIVE.format(field="referenceWindow"), "a metric's referenceWindow must be above 0"),
        Rule(
            "!has(self.referenceWindow) || (has(self.builtin) && self.builtin == 'predictionDrift')",
            "referenceWindow is for builtin predictionDrift only",
        ),
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    builtin: Builtin | None = Field(
        default=None,
        description="successRate (non-5xx share), latencyP99 (seconds), predictionDrift (PSI of the canary's "
        "predictions in `window` against the stable track's in `referenceWindow`), accuracy (share of labelled "
        "predictions whose class was right) and meanAbsoluteError, from labels that arrived in `window`.",
    )
    query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL returning one number; {{namespace}}, {{name}}, {{revision}}, {{track}} and "
        "{{window}} are filled in.",
    )
    web: WebMetric | None = Field(default=None, description="A number from an HTTP endpoint that answers JSON.")
    window: str = Field(default="1m", max_length=32, pattern=DURATION, description="Range of rate() windows.")
    min: float | None = Field(default=None, description="The canary's value may not be below this.")
    max: float | None = Field(default=None, description="The canary's value may not be above this.")
    relative: Relative | None = None
    critical: Critical | None = Field(
        default=None,
        description="Checked every analysis.criticalInterval, apart from the analysis ticks; one breach rolls back "
        "at once (and fails a bake).",
    )
    min_samples: int = Field(
        default=200,
        ge=1,
        description="predictionDrift: fewer predictions on either track than this is no data (PSI from a few "
        "dozen samples is mostly noise: about (buckets - 1) / samples).",
    )
    min_labels: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="accuracy, meanAbsoluteError: fewer labels for a track in `window` than this is no data, never "
        "a pass.",
    )
    reference_window: str | None = Field(
        default=None,
        max_length=32,
        pattern=DURATION,
        description="predictionDrift: the stable track's window (e.g. 1h, a steadier reference); default `window`.",
    )

    @property
    def provider(self) -> ProviderName:
        """The provider that measures this metric."""
        return "web" if self.web is not None else "prometheus"


class Policy(ApiModel):
    action: Literal["hold", "fail", "pass"] = Field(
        default="hold",
        description="hold: the canary neither advances nor is promoted; fail: rolled back once `limit` ticks in a "
        "row end so; pass: counts as a success (but promotion still needs real data).",
    )
    limit: int = Field(default=3, ge=0, le=1000, description="Ticks in a row before `fail` rolls back.")


class TemplateRef(ApiModel):
    """An AnalysisTemplate in the ModelDeployment's namespace, or a ClusterAnalysisTemplate."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    cluster_scope: bool = Field(default=False, description="A ClusterAnalysisTemplate instead of an AnalysisTemplate.")


def _unique_metric_names(metrics: list[AnalysisMetric]) -> None:
    # The API server enforces this through the list's map keys.
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError("analysis metric names must be unique")


METRICS_LIST: dict[str, JsonValue] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}


class Analysis(ApiModel):
    rules = (
        Rule(
            "(has(self.metrics) && self.metrics.size() > 0) || (has(self.templates) && self.templates.size() > 0)",
            "rollout.analysis needs metrics or templates",
        ),
        Rule(
            "has(self.prometheus) || (has(self.templates) && self.templates.size() > 0) || !has(self.metrics) || "
            "self.metrics.all(m, has(m.web))",
            "builtin and query metrics need rollout.analysis.prometheus, or a template that sets it",
        ),
        Rule(
            "!has(self.interval) || duration(self.interval) >= duration('1s')",
            "analysis.interval must be at least 1s",
        ),
        Rule(
            "!has(self.criticalInterval) || duration(self.criticalInterval) >= duration('500ms')",
            "analysis.criticalInterval must be at least 500ms",
        ),
    )

    interval: str = Field(default="30s", max_length=32, pattern=DURATION, description="Time between measurements.")
    critical_interval: str = Field(
        default="1s",
        max_length=32,
        pattern=DURATION,
        description="Time between checks of the metrics' critical bounds (about one Prometheus scrape interval); "
        "independent of interval.",
    )
    failure_limit: int = Field(
        default=0, ge=0, le=100, description="Failed measurements tolerated; one more rolls back."
    )
    no_data: Policy = Field(default_factory=Policy, description="When a query returns nothing.")
    errors: Policy = Field(default_factory=Policy, description="When a query fails (Prometheus down, bad PromQL).")
    starting_step: int = Field(default=0, ge=0, le=32, description="Background analysis runs from this step index on.")
    prometheus: PrometheusSource | None = Field(
        default=None, description="Where builtin and query metrics are measured; a template may set it instead."
    )
    templates: list[TemplateRef] = Field(
        default_factory=list,
        max_length=8,
        description="AnalysisTemplates (or ClusterAnalysisTemplates) whose metrics gate this canary too; the "
        "ModelDeployment's own metric wins over a template's of the same name.",
    )
    metrics: list[AnalysisMetric] = Field(default_factory=list, max_length=16, json_schema_extra=METRICS_LIST)

    @model_validator(mode="after")
    def _unique_names(self) -> Analysis:
        _unique_metric_names(self.metrics)
        return self


class AnalysisTemplateSpec(ApiModel):
    """Metrics (and the Prometheus that measures them) defined once, for ModelDeployments to reference by name."""

    prometheus: PrometheusSource | None = Field(
        default=None,
        description="Where this template's builtin and query metrics are measured; without it, the referencing "
        "ModelDeployment's rollout.analysis.prometheus.",
    )
    metrics: list[AnalysisMetric] = Field(min_length=1, max_length=16, json_schema_extra=METRICS_LIST)

    @model_validator(mode="after")
    def _unique_names(self) -> AnalysisTemplateSpec:
        _unique_metric_names(self.metrics)
        return self
