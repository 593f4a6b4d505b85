"""Analysis templates: metrics defined once (AnalysisTemplate, ClusterAnalysisTemplate) that ModelDeployments
reference by name. Pure: the reconcile reads the templates, this merges them into the analysis that runs.

The analysis that runs is every referenced template's metrics, in the order referenced, then the
ModelDeployment's own. A metric of the ModelDeployment's own wins over a template's of the same name; two
templates that define the same metric are an InvalidSpec that names both. A template's `builtin` and `query`
metrics are measured by the template's Prometheus, else the ModelDeployment's; the ModelDeployment's own by its
Prometheus, else the first referenced template's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modeldeploy.core.api import (
    CLUSTER_TEMPLATE_KIND,
    TEMPLATE_KIND,
    Analysis,
    AnalysisMetric,
    AnalysisTemplateSpec,
    PrometheusSource,
    TemplateRef,
)
from modeldeploy.core.presets import SpecError
from modeldeploy.core.validation import describe_validation_error

DRIFT_ON_MLSERVER = "predictionDrift needs a prediction histogram, which MLServer does not export"
LABELS_ON_MLSERVER = (
    "accuracy and meanAbsoluteError need the feedback counters of modeldeploy's model server, which MLServer does "
    "not export"
)


def describe_ref(ref: TemplateRef, namespace: str) -> str:
    """'AnalysisTemplate risk/std-gates' or 'ClusterAnalysisTemplate platform'."""
    if ref.cluster_scope:
        return f"{CLUSTER_TEMPLATE_KIND} {ref.name}"
    return f"{TEMPLATE_KIND} {namespace}/{ref.name}"


@dataclass(frozen=True)
class Template:
    """One analysis template as read from the API server."""

    kind: str
    name: str
    generation: int
    spec: AnalysisTemplateSpec

    @property
    def label(self) -> str:
        """What status.analysis.templates records: 'AnalysisTemplate/std-gates@generation 3'."""
        return f"{self.kind}/{self.name}@generation {self.generation}"

    @property
    def origin(self) -> str:
        return f"{self.kind}/{self.name}"

    @classmethod
    def from_object(cls, ref: TemplateRef, namespace: str, obj: dict[str, Any]) -> Template:
        """Parses a template object; SpecError names the template and the field."""
        kind = CLUSTER_TEMPLATE_KIND if ref.cluster_scope else TEMPLATE_KIND
        try:
            spec = AnalysisTemplateSpec.model_validate(obj.get("spec") or {})
        except ValidationError as error:
            raise SpecError(
                "spec.rollout.analysis.templates",
                f"{describe_ref(ref, namespace)} is invalid: {describe_validation_error(error)}",
            ) from error
        generation = int(obj.get("metadata", {}).get("generation") or 0)
        return cls(kind=kind, name=ref.name, generation=generation, spec=spec)


@dataclass(frozen=True)
class Resolved:
    """The analysis that runs: the ModelDeployment's, with the templates' metrics merged in."""

    analysis: Analysis
    sources: dict[str, PrometheusSource]
    """The Prometheus of each builtin or query metric, by metric name."""
    templates: tuple[str, ...] = ()
    """What was used, for status.analysis.templates."""


def resolve(analysis: Analysis, templates: list[Template], runtime: str) -> Resolved:
    """Merges `templates` (in the order the analysis references them) into `analysis`; SpecError on a clash."""
    own = {metric.name for metric in analysis.metrics}
    fallback = analysis.prometheus or next((t.spec.prometheus for t in templates if t.spec.prometheus), None)
    merged: list[AnalysisMetric] = []
    sources: dict[str, PrometheusSource] = {}
    defined_by: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    for template in templates:
        if (template.kind, template.name) in seen:
            continue  # referenced twice: the same metrics, once
        seen.add((template.kind, template.name))
        for metric in template.spec.metrics:
            if metric.name in defined_by:
                raise SpecError(
                    "spec.rollout.analysis.templates",
                    f"metric {metric.name!r} is defined by both {defined_by[metric.name]} and {template.origin}; "
                    "rename one, or define the metric in the ModelDeployment, which then wins",
                )
            defined_by[metric.name] = template.origin
            if metric.name in own:
                continue
            if metric.builtin == "predictionDrift" and runtime == "mlserver":
                raise SpecError("spec.rollout.analysis.templates", f"{template.origin}: {DRIFT_ON_MLSERVER}")
            if metric.builtin in ("accuracy", "meanAbsoluteError") and runtime == "mlserver":
                raise SpecError("spec.rollout.analysis.templates", f"{template.origin}: {LABELS_ON_MLSERVER}")
            if metric.provider == "prometheus":
                source = template.spec.prometheus or analysis.prometheus
                if source is None:
                    raise SpecError(
                        "spec.rollout.analysis.templates",
                        f"metric {metric.name!r} of {template.origin} needs a Prometheus: set prometheus in the "
                        "template or rollout.analysis.prometheus",
                    )
                sources[metric.name] = source
            merged.append(metric)
    for metric in analysis.metrics:
        if metric.provider == "prometheus":
            if fallback is None:
                raise SpecError(
                    "spec.rollout.analysis.prometheus",
                    f"metric {metric.name!r} needs a Prometheus: set rollout.analysis.prometheus or reference a "
                    "template that sets one",
                )
            sources[metric.name] = fallback
        merged.append(metric)
    # Not re-validated: the merged list may be longer than a ModelDeployment may list itself.
    resolved = analysis.model_copy(update={"metrics": merged})
    labels = tuple(dict.fromkeys(t.label for t in templates))
    return Resolved(analysis=resolved, sources=sources, templates=labels)
