from __future__ import annotations

import pytest

from ggic.cli_options import flag_for
from ggic.config import (
    ClassifierConfig,
    ConfigError,
    RequesterConfig,
    changed_keys,
    config_from_mapping,
    restart_only_keys,
    unknown_keys,
)


def test_defaults_are_the_documented_ones():
    config = config_from_mapping(ClassifierConfig, {})
    assert (config.top_k, config.score_threshold) == (5, 0.3)
    assert (config.request_topic, config.result_topic) == ("local/inference", "local/result")
    assert config.model_profile == "auto"
    assert config.publish_to_iot_core is False


def test_recipe_strings_are_coerced():
    config = config_from_mapping(ClassifierConfig, {
        "TopK": "3", "ScoreThreshold": "0.05", "QueueSize": "8.0", "PublishToIoTCore": "true",
        "AllowedImageDirs": '["/a", "/b"]', "ModelProfile": '{"layout": "NCHW"}'})
    assert config.top_k == 3 and config.score_threshold == 0.05 and config.queue_size == 8
    assert config.publish_to_iot_core is True
    assert config.allowed_image_dirs == ("/a", "/b")
    assert config.model_profile == {"layout": "NCHW"}
    assert config_from_mapping(ClassifierConfig, {"AllowedImageDirs": "/a, /b"}
                               ).allowed_image_dirs == ("/a", "/b")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        config_from_mapping(ClassifierConfig, {"TopK": "many", "ScoreThreshold": 2,
                                               "ResultTopic": "local/#", "Workers": 0})
    text = str(info.value)
    for key in ("TopK", "ScoreThreshold", "ResultTopic", "Workers"):
        assert key in text
    assert len(info.value.problems) == 4


@pytest.mark.parametrize("value", [True, "1.5", float("nan"), [3]])
def test_topk_rejects_non_integers(value):
    with pytest.raises(ConfigError):
        config_from_mapping(ClassifierConfig, {"TopK": value})


def test_requester_optional_overrides_accept_empty():
    config = config_from_mapping(RequesterConfig, {"TopK": "", "ScoreThreshold": ""})
    assert config.top_k is None and config.score_threshold is None
    config = config_from_mapping(RequesterConfig, {"TopK": "2", "InferenceInterval": "0.5"})
    assert config.top_k == 2 and config.inference_interval == 0.5


def test_unknown_and_changed_and_restart_keys():
    assert unknown_keys(ClassifierConfig, {"TopK": 1, "Topk": 2, "accessControl": {}}) == ["Topk"]
    a = config_from_mapping(ClassifierConfig, {})
    b = config_from_mapping(ClassifierConfig, {"TopK": 2})
    assert changed_keys(a, b) == ["TopK"]
    assert restart_only_keys(ClassifierConfig) == ["Workers", "InferenceThreads"]


def test_flags_are_derived_from_keys():
    assert flag_for("TopK") == "--top-k"
    assert flag_for("ModelDir") == "--model-dir"
    assert flag_for("PublishToIoTCore") == "--publish-to-iot-core"
    assert flag_for("IoTCoreTopic") == "--iot-core-topic"
