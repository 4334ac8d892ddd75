"""``ggic cloud deploy``: CreateDeployment's request shape and waiting, through Stubbers."""

from __future__ import annotations

import datetime as dt
import json

import pytest

pytest.importorskip("boto3")

from ggic.cloud.aws import CloudError, Poller, WaitTimeout  # noqa: E402
from ggic.cloud.deploy import (  # noqa: E402
    DeploymentInputError,
    create_deployment,
    deployment_components,
    describe_outcome,
    parse_component_versions,
    parse_update_config,
    target_arn,
    wait_for_deployment,
)
from ggic.cloud.stubbed import FAKE_ACCOUNT as ACCOUNT  # noqa: E402
from ggic.cloud.stubbed import ManualClock, manual_poller, offline_environment  # noqa: E402

NOW = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
CLASSIFIER = "com.custom.ImageClassifier"
REQUESTER = "com.custom.requester"
THING_ARN = f"arn:aws:iot:eu-west-1:{ACCOUNT}:thing/edge-1"


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch, tmp_path):
    offline_environment(monkeypatch, tmp_path)


def poller(timeout: float = 100.0, interval: float = 10.0) -> tuple[Poller, ManualClock]:
    return manual_poller(timeout, interval)


# --- inputs ---------------------------------------------------------------------------------


def test_update_config_becomes_the_apis_merge_string_and_reset_list(tmp_path):
    text = json.dumps({CLASSIFIER: {"MERGE": {"TopK": 3, "AllowedImageDirs": ["/data"]},
                                    "RESET": ["/ScoreThreshold"]},
                       REQUESTER: {"RESET": [""]}})
    updates = parse_update_config(text)
    components = deployment_components({CLASSIFIER: "1.0.0", REQUESTER: "1.0.1"}, updates)
    assert components == {
        CLASSIFIER: {"componentVersion": "1.0.0", "configurationUpdate": {
            "merge": '{"TopK":3,"AllowedImageDirs":["/data"]}', "reset": ["/ScoreThreshold"]}},
        REQUESTER: {"componentVersion": "1.0.1", "configurationUpdate": {"reset": [""]}},
    }
    as_file = tmp_path / "update.json"
    as_file.write_text(text)
    assert parse_update_config(str(as_file)) == updates


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "neither a JSON file nor valid JSON"),
    ('["x"]', "must be an object"),
    ('{"c": {"MERGE": [1]}}', "MERGE must be an object"),
    ('{"c": {"RESET": ["TopK"]}}', "JSON pointers"),
    ('{"c": {"UPDATE": {}}}', "only MERGE and RESET"),
    ('{"c": {}}', "must map to"),
])
def test_malformed_update_config_is_refused(text, message):
    with pytest.raises(DeploymentInputError, match=message):
        parse_update_config(text)


def test_an_update_for_a_component_not_deployed_is_refused():
    with pytest.raises(DeploymentInputError, match=f"--component {REQUESTER}=VERSION"):
        deployment_components({CLASSIFIER: "1.0.0"}, {REQUESTER: {"MERGE": {"TopK": 1}}})


def test_component_versions_in_greengrass_cli_form():
    assert parse_component_versions([f"{CLASSIFIER}=1.0.0", f"{REQUESTER} = 2.0.0"]) == {
        CLASSIFIER: "1.0.0", REQUESTER: "2.0.0"}
    for bad in (["x"], ["x="], ["=1.0.0"], ["a=1.0.0", "a=1.0.1"]):
        with pytest.raises(DeploymentInputError):
            parse_component_versions(bad)


def test_targets_become_arns(stubs):
    s = stubs("eu-west-1")
    aws = s.aws(ACCOUNT)
    assert target_arn("edge-1", aws) == THING_ARN
    assert target_arn("thing/edge-1", aws) == THING_ARN
    assert target_arn("thinggroup/line-3", aws) == \
        f"arn:aws:iot:eu-west-1:{ACCOUNT}:thinggroup/line-3"
    own = "arn:aws:iot:us-west-2:210987654321:thinggroup/other"
    assert target_arn(own, aws) == own
    for bad in ("group/x", "thing/", "arn:aws:iam::1:role/x"):
        with pytest.raises(DeploymentInputError):
            target_arn(bad, aws)


# --- CreateDeployment -----------------------------------------------------------------------


def test_create_deployment_request_shape(stubs):
    s = stubs("eu-west-1")
    s["sts"].add_response("get_caller_identity", {
        "Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/dev", "UserId": "AIDAEXAMPLE"})
    merge = {"ModelDir": "/m", "TopK": "3"}
    s["greengrassv2"].add_response("create_deployment", {"deploymentId": "d-1", "iotJobId": "j"}, {
        "targetArn": f"arn:aws:iot:eu-west-1:{ACCOUNT}:thinggroup/line-3",
        "deploymentName": "ggic",
        "components": {
            CLASSIFIER: {"componentVersion": "1.0.2", "configurationUpdate": {
                "merge": json.dumps(merge, separators=(",", ":")), "reset": ["/TopK"]}},
            REQUESTER: {"componentVersion": "1.0.0"},
        }})
    ref = create_deployment(s.aws(), "thinggroup/line-3",
                            {CLASSIFIER: "1.0.2", REQUESTER: "1.0.0"},
                            {CLASSIFIER: {"MERGE": merge, "RESET": ["/TopK"]}},
                            deployment_name="ggic")
    assert ref.deployment_id == "d-1" and ref.iot_job_id == "j"


def test_keep_existing_revises_the_latest_deployment(stubs):
    s = stubs("eu-west-1")
    gg = s["greengrassv2"]
    gg.add_response("list_deployments", {"deployments": [
        {"deploymentId": "old", "isLatestForTarget": True, "targetArn": THING_ARN}]},
        {"targetArn": THING_ARN, "historyFilter": "LATEST_ONLY"})
    policies = {"failureHandlingPolicy": "ROLLBACK"}
    gg.add_response("get_deployment", {
        "deploymentId": "old", "targetArn": THING_ARN, "deploymentPolicies": policies,
        "components": {
            "aws.greengrass.Cli": {"componentVersion": "2.12.0"},
            REQUESTER: {"componentVersion": "1.0.0",
                        "configurationUpdate": {"merge": '{"InferenceInterval":"5"}'},
                        "runWith": {"posixUser": "ggc_user"}},
        }}, {"deploymentId": "old"})
    gg.add_response("create_deployment", {"deploymentId": "new"}, {
        "targetArn": THING_ARN, "deploymentPolicies": policies,
        "components": {
            "aws.greengrass.Cli": {"componentVersion": "2.12.0"},
            REQUESTER: {"componentVersion": "1.0.1", "runWith": {"posixUser": "ggc_user"}},
            CLASSIFIER: {"componentVersion": "1.0.0"},
        }})
    ref = create_deployment(s.aws(ACCOUNT), "edge-1", {REQUESTER: "1.0.1", CLASSIFIER: "1.0.0"},
                            keep_existing=True)
    assert ref.deployment_id == "new"


def test_aws_refusal_is_a_typed_error_with_advice(stubs):
    s = stubs("eu-west-1")
    s["greengrassv2"].add_client_error(
        "create_deployment", "ResourceNotFoundException",
        "Component com.custom.ImageClassifier version 9.9.9 not found", http_status_code=404)
    with pytest.raises(CloudError) as err:
        create_deployment(s.aws(ACCOUNT), "edge-1", {CLASSIFIER: "9.9.9"})
    assert err.value.code == "ResourceNotFoundException"
    assert "9.9.9 not found" in str(err.value)
    assert "--region" in err.value.hint


def test_access_denied_names_the_iam_action(stubs):
    s = stubs("eu-west-1")
    s["greengrassv2"].add_client_error("create_deployment", "AccessDeniedException",
                                       "not authorized", http_status_code=403)
    with pytest.raises(CloudError) as err:
        create_deployment(s.aws(ACCOUNT), "edge-1", {CLASSIFIER: "1.0.0"})
    assert "greengrass:CreateDeployment" in err.value.hint


# --- waiting --------------------------------------------------------------------------------


def effective(deployment_id: str, status: str, **extra) -> dict:
    return {"deploymentId": deployment_id, "deploymentName": "ggic", "targetArn": THING_ARN,
            "coreDeviceExecutionStatus": status, "creationTimestamp": NOW,
            "modifiedTimestamp": NOW, **extra}


def test_wait_follows_the_device_until_it_succeeds(stubs):
    s = stubs("eu-west-1")
    gg = s["greengrassv2"]
    query = {"coreDeviceThingName": "edge-1"}
    gg.add_response("list_effective_deployments",
                    {"effectiveDeployments": [effective("older", "SUCCEEDED")]}, query)
    gg.add_response("list_effective_deployments",
                    {"effectiveDeployments": [effective("older", "SUCCEEDED")],
                     "nextToken": "p2"}, query)
    gg.add_response("list_effective_deployments",
                    {"effectiveDeployments": [effective("d-1", "IN_PROGRESS")]},
                    {**query, "nextToken": "p2"})
    gg.add_response("list_effective_deployments",
                    {"effectiveDeployments": [effective("d-1", "SUCCEEDED")]}, query)
    gg.add_response("get_core_device", {"coreDeviceThingName": "edge-1", "status": "HEALTHY"},
                    query)
    wait, clock = poller()
    outcome = wait_for_deployment(s.aws(ACCOUNT), "edge-1", "d-1", wait)
    assert outcome.succeeded and outcome.status == "SUCCEEDED"
    assert outcome.core_device_status == "HEALTHY"
    assert clock.sleeps == [10, 10]


def test_a_failed_deployment_reports_the_device_reason(stubs):
    s = stubs("eu-west-1")
    gg = s["greengrassv2"]
    gg.add_response("list_effective_deployments", {"effectiveDeployments": [effective(
        "d-1", "FAILED", reason="component com.custom.ImageClassifier broken",
        statusDetails={"errorStack": ["DEPLOYMENT_FAILURE", "COMPONENT_BROKEN"],
                       "errorTypes": ["COMPONENT_ERROR"]})]})
    gg.add_response("get_core_device", {"status": "UNHEALTHY"})
    wait, _ = poller()
    outcome = wait_for_deployment(s.aws(ACCOUNT), "edge-1", "d-1", wait)
    assert not outcome.succeeded
    text = describe_outcome(outcome)
    assert "FAILED" in text and "ImageClassifier broken" in text
    assert "COMPONENT_BROKEN" in text and "UNHEALTHY" in text


def test_waiting_times_out_with_the_last_state(stubs):
    s = stubs("eu-west-1")
    for _ in range(3):
        s["greengrassv2"].add_response("list_effective_deployments", {"effectiveDeployments": []})
    wait, _ = poller(timeout=20, interval=10)
    with pytest.raises(WaitTimeout) as err:
        wait_for_deployment(s.aws(ACCOUNT), "edge-1", "d-1", wait)
    assert "not yet received" in err.value.last_state


def test_waiting_for_a_thing_that_is_no_core_device(stubs):
    s = stubs("eu-west-1")
    s["greengrassv2"].add_client_error("list_effective_deployments",
                                       "ResourceNotFoundException", http_status_code=404)
    wait, _ = poller()
    with pytest.raises(CloudError, match="not a Greengrass core device"):
        wait_for_deployment(s.aws(ACCOUNT), "edge-1", "d-1", wait)
