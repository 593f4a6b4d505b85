import pytest
from pydantic import ValidationError

from modeldeploy.core.api import ModelDeploymentSpec, check_name, parse_spec
from modeldeploy.core.naming import Owner
from modeldeploy.core.presets import SpecError
from modeldeploy.core.render import pod_template
from modeldeploy.core.validation import validate
from specs import bad_specs, valid_spec

OWNER = Owner(name="fraud-scorer", namespace="risk", uid="uid-1")


def test_minimal_spec_gets_documented_defaults() -> None:
    spec = parse_spec({"model": {"name": "m", "version": "1", "uri": "s3://b/m/1", "format": "sklearn"}})
    assert spec.runtime.preset == "modelserver"
    assert spec.service.port == 80
    assert spec.desired_replicas == 1
    assert spec.autoscaling is None


def test_autoscaling_leaves_replicas_to_the_hpa() -> None:
    spec = parse_spec(valid_spec(replicas=None, autoscaling={"maxReplicas": 4}))
    assert spec.desired_replicas is None
    assert spec.autoscaling is not None
    assert spec.autoscaling.min_replicas == 1
    assert spec.autoscaling.target_cpu_utilization_percentage == 80


def test_camel_case_round_trip() -> None:
    raw = valid_spec(
        runtime={
            "preset": "custom",
            "image": "r/img:1",
            "port": 9000,
            "runAsUser": 1234,
            "readinessProbe": {"path": "/ready", "periodSeconds": 5},
        }
    )
    spec = ModelDeploymentSpec.model_validate(raw)
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["runtime"]["runAsUser"] == 1234
    assert dumped["runtime"]["readinessProbe"]["periodSeconds"] == 5


def test_there_are_at_least_twenty_kinds_of_bad_spec() -> None:
    assert len(bad_specs()) >= 20
    assert {c["stage"] for c in bad_specs()} == {"schema", "cel", "operator"}


@pytest.mark.parametrize("case", bad_specs(), ids=lambda c: c["id"])
def test_operator_names_the_field_of_every_bad_spec(case: dict) -> None:
    """What admission refuses, the operator refuses too, with the field and the reason."""

    def check() -> None:
        pod_template(OWNER, validate(case.get("name", "fraud-scorer"), case["spec"]))

    with pytest.raises(SpecError) as raised:
        check()
    message = str(raised.value)
    assert case["field"] in message
    assert case["error"] in message


def test_valid_names() -> None:
    assert check_name("fraud-scorer") is None
    assert check_name("a" * 52) is None
    assert check_name("a" * 53) is not None
    assert check_name("9lives") is not None


def test_validation_error_lists_every_problem() -> None:
    with pytest.raises(ValidationError):
        parse_spec({"model": {"name": "m"}})
    with pytest.raises(SpecError) as raised:
        validate("m", {"model": {"name": "m", "replicas": "x"}})
    assert "spec.model.replicas" in str(raised.value)
    assert "spec.model.uri" in str(raised.value)
    assert "spec.model.format" in str(raised.value)


def test_undo_picks_the_newest_good_revision_that_is_not_serving() -> None:
    from modeldeploy.client import previous_good

    def entry(revision, outcome):
        return {"revision": revision, "outcome": outcome, "model": {"name": "m", "version": revision, "uri": "s3://x"}}

    md = {
        "status": {
            "stable": {"revision": "c"},
            "history": [
                entry("a", "Deployed"),
                entry("b", "Promoted"),
                entry("x", "RolledBack"),
                entry("c", "Promoted"),
            ],
        }
    }
    good = previous_good(md)
    assert good is not None
    assert good["revision"] == "b"
    assert previous_good({"status": {"stable": {"revision": "a"}, "history": [entry("a", "Deployed")]}}) is None
