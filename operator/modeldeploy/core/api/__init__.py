"""The ModelDeployment API (modeldeploy.io/v1alpha1), by concept; the single source of truth for the CRD.

- `base`: wire conventions, formats, and `Rule`, a cross-field rule declared once as CEL;
- `model`: the artifact served; `runtime`: the container and its scale; `traffic`: routers;
- `rollout`: canary steps; `analysis`: metric gates; `spec`: the whole spec and the name;
- `status`: what the operator reports.

Everything public is re-exported here, so callers import from `modeldeploy.core.api`.
"""

from modeldeploy.core.api.analysis import (
    Analysis,
    AnalysisMetric,
    AnalysisTemplateSpec,
    Builtin,
    ConfigMapKey,
    Critical,
    Header,
    HeaderSource,
    Policy,
    PrometheusSource,
    ProviderName,
    Relative,
    SecretKey,
    SigV4,
    TemplateRef,
    Tls,
    WebMetric,
    json_path_expression,
)
from modeldeploy.core.api.base import DNS_LABEL, ApiModel, Rule, parse_duration
from modeldeploy.core.api.hooks import (
    GateResult,
    GateStatus,
    GateType,
    Notification,
    NotificationEvent,
    SecretSource,
    Webhook,
)
from modeldeploy.core.api.model import (
    MlflowRegistry,
    ModelFormat,
    ModelSource,
    Registry,
    RegistryReference,
    S3Options,
    Storage,
)
from modeldeploy.core.api.pod import EnvFromSource, PodPlacement, Toleration, Volume, VolumeMount
from modeldeploy.core.api.rollout import AnalysisGate, Pause, Rollout, Step, default_steps
from modeldeploy.core.api.runtime import (
    Autoscaling,
    EnvSource,
    EnvVar,
    KeyRef,
    Probe,
    Resources,
    Runtime,
    RuntimePreset,
    ServicePort,
)
from modeldeploy.core.api.spec import MAX_NAME_LENGTH, NAME_RULES, ModelDeploymentSpec, check_name, parse_spec
from modeldeploy.core.api.status import (
    HISTORY_LIMIT,
    MEASUREMENTS_KEPT,
    ActionName,
    ActionStatus,
    AnalysisStatus,
    BakeStatus,
    CanaryStatus,
    Condition,
    ConditionStatus,
    HistoryEntry,
    Measurement,
    MeasurementResult,
    MetricMeasurements,
    ModelDeploymentStatus,
    Outcome,
    Phase,
    RevisionStatus,
    RollbackStatus,
    ServedModel,
    SourceStatus,
)
from modeldeploy.core.api.traffic import (
    GatewayApiConfig,
    IstioConfig,
    NginxConfig,
    ParentRef,
    RouterName,
    Traffic,
)

GROUP = "modeldeploy.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["mdep"]
# Reusable analysis definitions that ModelDeployments reference by name (spec.rollout.analysis.templates).
TEMPLATE_KIND = "AnalysisTemplate"
TEMPLATE_PLURAL = "analysistemplates"
CLUSTER_TEMPLATE_KIND = "ClusterAnalysisTemplate"
CLUSTER_TEMPLATE_PLURAL = "clusteranalysistemplates"

__all__ = [
    "API_VERSION",
    "CLUSTER_TEMPLATE_KIND",
    "CLUSTER_TEMPLATE_PLURAL",
    "DNS_LABEL",
    "GROUP",
    "HISTORY_LIMIT",
    "KIND",
    "MAX_NAME_LENGTH",
    "MEASUREMENTS_KEPT",
    "NAME_RULES",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "TEMPLATE_KIND",
    "TEMPLATE_PLURAL",
    "VERSION",
    "ActionName",
    "ActionStatus",
    "Analysis",
    "AnalysisGate",
    "AnalysisMetric",
    "AnalysisStatus",
    "AnalysisTemplateSpec",
    "ApiModel",
    "Autoscaling",
    "BakeStatus",
    "Builtin",
    "CanaryStatus",
    "Condition",
    "ConditionStatus",
    "ConfigMapKey",
    "Critical",
    "EnvFromSource",
    "EnvSource",
    "EnvVar",
    "GateResult",
    "GateStatus",
    "GateType",
    "GatewayApiConfig",
    "Header",
    "HeaderSource",
    "HistoryEntry",
    "IstioConfig",
    "KeyRef",
    "Measurement",
    "MeasurementResult",
    "MetricMeasurements",
    "MlflowRegistry",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelFormat",
    "ModelSource",
    "NginxConfig",
    "Notification",
    "NotificationEvent",
    "Outcome",
    "ParentRef",
    "Pause",
    "Phase",
    "PodPlacement",
    "Policy",
    "Probe",
    "PrometheusSource",
    "ProviderName",
    "Registry",
    "RegistryReference",
    "Relative",
    "Resources",
    "RevisionStatus",
    "RollbackStatus",
    "Rollout",
    "RouterName",
    "Rule",
    "Runtime",
    "RuntimePreset",
    "S3Options",
    "SecretKey",
    "SecretSource",
    "ServedModel",
    "ServicePort",
    "SigV4",
    "SourceStatus",
    "Step",
    "Storage",
    "TemplateRef",
    "Tls",
    "Toleration",
    "Traffic",
    "Volume",
    "VolumeMount",
    "WebMetric",
    "Webhook",
    "check_name",
    "default_steps",
    "json_path_expression",
    "parse_duration",
    "parse_spec",
]
