from modeldeploy.core.compare import contains, parse_quantity


def test_subset_ignores_server_side_fields() -> None:
    live = {"spec": {"clusterIP": "10.0.0.9", "ports": [{"port": 80, "protocol": "TCP"}]}, "status": {}}
    assert contains(live, {"spec": {"ports": [{"port": 80}]}})


def test_a_changed_or_missing_value_is_a_difference() -> None:
    live = {"spec": {"replicas": 3, "template": {"labels": {"a": "1"}}}}
    assert not contains(live, {"spec": {"replicas": 4}})
    assert not contains(live, {"spec": {"template": {"labels": {"b": "1"}}}})


def test_lists_must_match_item_by_item() -> None:
    live = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    assert contains(live, {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]})
    assert not contains(live, {"env": [{"name": "A", "value": "1"}]})
    assert not contains(live, {"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]})


def test_zero_values_the_server_omits_count_as_present() -> None:
    assert contains({"probe": {"periodSeconds": 10}}, {"probe": {"periodSeconds": 10, "initialDelaySeconds": 0}})
    assert not contains({"probe": {}}, {"probe": {"initialDelaySeconds": 5}})


def test_quantities_are_compared_by_value() -> None:
    assert contains({"cpu": "1"}, {"cpu": "1000m"})
    assert contains({"memory": "1Gi"}, {"memory": "1024Mi"})
    assert contains({"cpu": 2}, {"cpu": "2"})
    assert not contains({"cpu": "1"}, {"cpu": "1001m"})
    assert parse_quantity("500m") == parse_quantity("0.5")
    assert parse_quantity("lots") is None
