"""``ggic cloud publish``: GDK's publish through botocore Stubbers (no AWS, no network)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

boto3 = pytest.importorskip("boto3")
from botocore.stub import Stubber  # noqa: E402

from ggic.cloud.aws import AwsClients, CloudError, WaitTimeout  # noqa: E402
from ggic.cloud.publish import (  # noqa: E402
    PublishError,
    artifact_bucket,
    find_built_components,
    highest_version,
    next_patch,
    publish_build,
    publish_settings_from_gdk_config,
    rewrite_artifact_uris,
)
from ggic.cloud.stubbed import FAKE_ACCOUNT as ACCOUNT  # noqa: E402
from ggic.cloud.stubbed import (  # noqa: E402
    NetworkRefused,
    manual_poller,
    offline_environment,
    refuse_network,
)
from ggic.gdk_build import build_all  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PLACEHOLDER = "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION"
NOW = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch, tmp_path):
    offline_environment(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def repo_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "greengrass-build"
    build_all(REPO, out)
    return out


@pytest.fixture
def build(repo_build, tmp_path) -> Path:
    copy = tmp_path / "greengrass-build"
    shutil.copytree(repo_build, copy)
    return copy


def caller_identity(stubber: Stubber) -> None:
    stubber.add_response("get_caller_identity", {
        "UserId": "AIDAEXAMPLE", "Account": ACCOUNT,
        "Arn": f"arn:aws:iam::{ACCOUNT}:user/dev"})


def created(name: str, version: str, region: str = "eu-west-1") -> dict:
    return {"arn": f"arn:aws:greengrass:{region}:{ACCOUNT}:components:{name}:versions:{version}",
            "componentName": name, "componentVersion": version, "creationTimestamp": NOW,
            "status": {"componentState": "REQUESTED", "message": "NONE", "errors": {}}}


def make_build(root: Path, name: str, version: str, fmt: str = "yaml",
               files: tuple[str, ...] = ("thing.zip",)) -> Path:
    """A greengrass-build folder as `gdk component build` leaves it, for one component."""
    build = root / "greengrass-build"
    artifacts = build / "artifacts" / name / version
    artifacts.mkdir(parents=True)
    for file in files:
        with zipfile.ZipFile(artifacts / file, "w") as z:
            z.writestr("main.py", "print('hi')\n")
    recipe = {
        "RecipeFormatVersion": "2020-01-25", "ComponentName": name, "ComponentVersion": version,
        "ComponentPublisher": "me",
        "Manifests": [{"Platform": {"os": "linux"},
                       "Lifecycle": {"Run": "python3 {artifacts:decompressedPath}/thing/main.py"},
                       "Artifacts": [{"URI": f"{PLACEHOLDER}/thing.zip", "Unarchive": "ZIP"},
                                     {"URI": "s3://elsewhere/shared/model.bin"}]}],
    }
    (build / "recipes").mkdir()
    path = build / "recipes" / f"recipe.{fmt}"
    text = json.dumps(recipe, indent=4) if fmt == "json" else yaml.safe_dump(recipe,
                                                                              sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return build


def expected_recipe(built_recipe: Path, uri: str, version: str | None = None) -> dict:
    recipe = yaml.safe_load(built_recipe.read_text())
    if version:
        recipe["ComponentVersion"] = version
    for manifest in recipe["Manifests"]:
        for artifact in manifest.get("Artifacts", []):
            if artifact["URI"].startswith(PLACEHOLDER):
                artifact["URI"] = uri
    return recipe


# --- the repository's own build -------------------------------------------------------------


def test_publish_creates_the_bucket_uploads_and_rewrites_uris(stubs, build):
    s = stubs("eu-west-1")
    bucket = f"ggic-components-eu-west-1-{ACCOUNT}"
    caller_identity(s["sts"])
    s["s3"].add_client_error("head_bucket", "404", http_status_code=404,
                             expected_params={"Bucket": bucket})
    s["s3"].add_response("create_bucket", {"Location": f"http://{bucket}.s3.amazonaws.com/"}, {
        "Bucket": bucket, "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}})
    uploads = s.capture("s3", "PutObject")
    sent = s.capture("greengrassv2", "CreateComponentVersion")
    names = ["com.custom.ImageClassifier", "com.custom.requester"]
    for name in names:
        s["s3"].add_response("put_object", {"ETag": '"e"'})
        s["greengrassv2"].add_response("create_component_version", created(name, "1.0.0"))

    published = publish_build(s.aws(), build, bucket_prefix="ggic-components")

    s.verify()
    assert [p.name for p in published] == names
    assert len(sent) == len(names)
    assert [(u["Bucket"], u["Key"]) for u in uploads] == [
        (bucket, f"{name}/1.0.0/ggic.zip") for name in names]
    for name, params, item in zip(names, sent, published):
        uri = f"s3://{bucket}/{name}/1.0.0/ggic.zip"
        recipe = yaml.safe_load(params["inlineRecipe"])
        assert recipe == expected_recipe(build / "recipes" / f"{name}.yaml", uri)
        uris = [a["URI"] for m in recipe["Manifests"] for a in m["Artifacts"]]
        assert uris and set(uris) == {uri}
        assert params["inlineRecipe"] == item.recipe_path.read_bytes()
        assert item.recipe_path == build / "published-recipes" / f"{name}-1.0.0.yaml"
        assert item.uploaded == (uri,)
        assert item.state == "REQUESTED"
    # recipes/ (what greengrass-cli --recipeDir reads) is left as built
    assert sorted(p.name for p in (build / "recipes").iterdir()) == [f"{n}.yaml" for n in names]
    assert PLACEHOLDER in (build / "recipes" / "com.custom.requester.yaml").read_text()


def test_us_east_1_bucket_is_created_without_location_constraint(stubs, build):
    s = stubs("us-east-1")
    bucket = f"ggic-components-us-east-1-{ACCOUNT}"
    caller_identity(s["sts"])
    s["s3"].add_client_error("head_bucket", "404", http_status_code=404)
    s["s3"].add_response("create_bucket", {}, {"Bucket": bucket})
    s["s3"].add_response("put_object", {"ETag": '"e"'})
    s["greengrassv2"].add_response("create_component_version",
                                   created("com.custom.requester", "1.0.0", "us-east-1"))
    published = publish_build(s.aws(), build, bucket_prefix="ggic-components",
                              components=["com.custom.requester"])
    assert [p.name for p in published] == ["com.custom.requester"]


@pytest.mark.parametrize(("region", "location"), [("eu-west-1", "eu-west-1"),
                                                  ("us-east-1", None), ("eu-west-1", "EU")])
def test_an_existing_bucket_in_the_region_is_used_as_is(stubs, build, region, location):
    s = stubs(region)
    s["s3"].add_response("head_bucket", {}, {"Bucket": "my-artifacts"})
    s["s3"].add_response("get_bucket_location",
                         {"LocationConstraint": location} if location else {},
                         {"Bucket": "my-artifacts"})
    s["s3"].add_response("put_object", {"ETag": '"e"'})
    s["greengrassv2"].add_response("create_component_version",
                                   created("com.custom.requester", "1.0.0", region))
    publish_build(s.aws(ACCOUNT), build, bucket="my-artifacts",
                  components=["com.custom.requester"])


def test_a_bucket_of_ours_in_another_region_is_refused_before_any_upload(stubs, build):
    s = stubs("eu-west-1")
    s["s3"].add_response("head_bucket", {})
    s["s3"].add_response("get_bucket_location", {"LocationConstraint": "eu-central-1"})
    with pytest.raises(CloudError) as err:
        publish_build(s.aws(ACCOUNT), build, bucket="my-artifacts")
    assert err.value.code == "BucketInOtherRegion"
    assert "eu-central-1" in str(err.value) and "--region" in str(err.value)


def test_a_bucket_name_taken_by_another_account_is_a_clear_error(stubs, build):
    s = stubs("eu-west-1")
    s["s3"].add_client_error("head_bucket", "403", http_status_code=403)
    with pytest.raises(CloudError) as err:
        publish_build(s.aws(ACCOUNT), build, bucket="taken-bucket")
    assert err.value.code == "403"
    assert "another account" in str(err.value)


def test_a_bucket_created_meanwhile_by_us_is_accepted(stubs, build):
    s = stubs("eu-west-1")
    s["s3"].add_client_error("head_bucket", "404", http_status_code=404)
    s["s3"].add_client_error("create_bucket", "BucketAlreadyOwnedByYou", http_status_code=409)
    s["s3"].add_response("get_bucket_location", {"LocationConstraint": "eu-west-1"})
    s["s3"].add_response("put_object", {"ETag": '"e"'})
    s["greengrassv2"].add_response("create_component_version",
                                   created("com.custom.requester", "1.0.0"))
    publish_build(s.aws(ACCOUNT), build, bucket="my-artifacts",
                  components=["com.custom.requester"])


def test_bucket_already_exists_elsewhere_says_to_choose_another_prefix(stubs, build):
    s = stubs("eu-west-1")
    s["s3"].add_client_error("head_bucket", "404", http_status_code=404)
    s["s3"].add_client_error("create_bucket", "BucketAlreadyExists", "The bucket is taken",
                             http_status_code=409)
    with pytest.raises(CloudError) as err:
        publish_build(s.aws(ACCOUNT), build, bucket_prefix="popular")
    assert err.value.code == "BucketAlreadyExists"
    assert err.value.operation == "CreateBucket"
    assert "--bucket-prefix" in str(err.value)


def test_missing_bucket_with_create_disabled(stubs, build):
    s = stubs("eu-west-1")
    s["s3"].add_client_error("head_bucket", "404", http_status_code=404)
    with pytest.raises(CloudError) as err:
        publish_build(s.aws(ACCOUNT), build, bucket="absent-bucket", create_bucket=False)
    assert err.value.code == "NoSuchBucket"


# --- versions -------------------------------------------------------------------------------


def test_semver_ordering_and_next_patch():
    assert highest_version(["1.0.9", "1.0.10", "1.0.10-beta", "0.9.0"]) == "1.0.10"
    assert highest_version(["2.0.0-rc.1", "2.0.0-rc.2", "1.9.9"]) == "2.0.0-rc.2"
    assert highest_version(["2.0.0-rc.1", "2.0.0"]) == "2.0.0"
    assert highest_version(["latest"]) is None
    assert next_patch("1.0.10") == "1.0.11"
    assert next_patch("1.2.3-beta.1+build5") == "1.2.4"


def test_next_patch_follows_the_highest_version_over_all_pages(stubs, tmp_path):
    name = "com.example.Thing"
    build = make_build(tmp_path, name, "NEXT_PATCH")
    s = stubs("eu-west-1")
    arn = f"arn:aws:greengrass:eu-west-1:{ACCOUNT}:components:{name}"
    caller_identity(s["sts"])
    s["s3"].add_response("head_bucket", {})
    s["s3"].add_response("get_bucket_location", {"LocationConstraint": "eu-west-1"})
    s["greengrassv2"].add_response("list_component_versions", {
        "componentVersions": [{"componentName": name, "componentVersion": "1.0.9"},
                              {"componentName": name, "componentVersion": "1.0.10-beta"}],
        "nextToken": "page-2"}, {"arn": arn})
    s["greengrassv2"].add_response("list_component_versions", {
        "componentVersions": [{"componentName": name, "componentVersion": "1.0.10"},
                              {"componentName": name, "componentVersion": "0.9.0"}]},
        {"arn": arn, "nextToken": "page-2"})
    uploads = s.capture("s3", "PutObject")
    sent = s.capture("greengrassv2", "CreateComponentVersion")
    s["s3"].add_response("put_object", {"ETag": '"e"'})
    s["greengrassv2"].add_response("create_component_version", created(name, "1.0.11"))

    (item,) = publish_build(s.aws(), build, bucket_prefix="art")

    bucket = f"art-eu-west-1-{ACCOUNT}"
    assert item.version == "1.0.11"
    assert [u["Key"] for u in uploads] == [f"{name}/1.0.11/thing.zip"]
    recipe = yaml.safe_load(sent[0]["inlineRecipe"])
    assert recipe["ComponentVersion"] == "1.0.11"
    assert [a["URI"] for a in recipe["Manifests"][0]["Artifacts"]] == [
        f"s3://{bucket}/{name}/1.0.11/thing.zip", "s3://elsewhere/shared/model.bin"]
    assert item.recipe_path.name == f"{name}-1.0.11.yaml"


def test_next_patch_of_a_new_component_is_1_0_0_in_the_partition(stubs, tmp_path):
    name = "com.example.New"
    build = make_build(tmp_path, name, "NEXT_PATCH")
    s = stubs("cn-north-1")
    s["s3"].add_response("head_bucket", {})
    s["s3"].add_response("get_bucket_location", {"LocationConstraint": "cn-north-1"})
    s["greengrassv2"].add_client_error(
        "list_component_versions", "ResourceNotFoundException", http_status_code=404,
        expected_params={"arn": f"arn:aws-cn:greengrass:cn-north-1:{ACCOUNT}:components:{name}"})
    s["s3"].add_response("put_object", {"ETag": '"e"'})
    s["greengrassv2"].add_response("create_component_version",
                                   created(name, "1.0.0", "cn-north-1"))
    (item,) = publish_build(s.aws(ACCOUNT), build, bucket="bucket-cn")
    assert item.version == "1.0.0"


def test_json_recipes_stay_json(stubs, tmp_path):
    build = make_build(tmp_path, "com.example.Json", "2.1.0", fmt="json")
    s = stubs("eu-west-1")
    s["s3"].add_response("head_bucket", {})
    s["s3"].add_response("get_bucket_location", {"LocationConstraint": "eu-west-1"})
    s["s3"].add_response("put_object", {"ETag": '"e"'})
    sent = s.capture("greengrassv2", "CreateComponentVersion")
    s["greengrassv2"].add_response("create_component_version",
                                   created("com.example.Json", "2.1.0"))
    (item,) = publish_build(s.aws(ACCOUNT), build, bucket="my-artifacts")
    recipe = json.loads(sent[0]["inlineRecipe"])
    assert recipe["Manifests"][0]["Artifacts"][0]["URI"] == \
        "s3://my-artifacts/com.example.Json/2.1.0/thing.zip"
    assert item.recipe_path.suffix == ".json"


# --- errors ---------------------------------------------------------------------------------


def test_an_existing_version_is_a_typed_error_that_says_what_to_do(stubs, build):
    s = stubs("eu-west-1")
    s["s3"].add_response("head_bucket", {})
    s["s3"].add_response("get_bucket_location", {"LocationConstraint": "eu-west-1"})
    s["s3"].add_response("put_object", {"ETag": '"e"'})
    s["greengrassv2"].add_client_error(
        "create_component_version", "ConflictException",
        "Component com.custom.requester version 1.0.0 already exists", http_status_code=409)
    with pytest.raises(CloudError) as err:
        publish_build(s.aws(ACCOUNT), build, bucket="my-artifacts",
                      components=["com.custom.requester"])
    assert err.value.code == "ConflictException"
    assert err.value.operation == "CreateComponentVersion"
    assert "already exists" in err.value.aws_message
    assert "NEXT_PATCH" in err.value.hint


def test_access_denied_on_upload_names_the_missing_permission(stubs, build):
    s = stubs("eu-west-1")
    s["s3"].add_response("head_bucket", {})
    s["s3"].add_response("get_bucket_location", {"LocationConstraint": "eu-west-1"})
    s["s3"].add_client_error("put_object", "AccessDenied", "Access Denied",
                             http_status_code=403)
    with pytest.raises(CloudError) as err:
        publish_build(s.aws(ACCOUNT), build, bucket="my-artifacts",
                      components=["com.custom.requester"])
    assert err.value.code == "AccessDenied"
    assert "s3:PutObject" in err.value.hint


def test_no_credentials_is_a_clear_error(monkeypatch, build):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    clients = AwsClients(region_name="eu-west-1")
    refuse_network(clients.client("sts"))
    with pytest.raises(CloudError) as err:
        publish_build(clients, build, bucket_prefix="ggic-components")
    assert err.value.code == "NoCredentials"
    assert "AWS_PROFILE" in err.value.hint


def test_a_client_without_a_stubbed_response_cannot_reach_aws():
    clients = AwsClients(region_name="eu-west-1")
    refuse_network(clients.client("sts"))
    with pytest.raises(NetworkRefused):
        clients.account()


def test_an_unbuilt_placeholder_is_refused_before_any_call(stubs, tmp_path):
    build = make_build(tmp_path, "com.example.Thing", "1.0.0")
    (build / "artifacts" / "com.example.Thing" / "1.0.0" / "thing.zip").unlink()
    s = stubs("eu-west-1")
    with pytest.raises(PublishError, match="ggic build"):
        publish_build(s.aws(ACCOUNT), build, bucket="my-artifacts")


def test_rewrite_keeps_foreign_uris_and_refuses_missing_built_files():
    recipe = {"manifests": [{"artifacts": [
        {"uri": f"{PLACEHOLDER}/a.zip"}, {"Uri": "s3://other/b.zip"},
        {"URI": "docker:nginx:latest"}]}]}
    changes = rewrite_artifact_uris(recipe, "bkt", "n", "1.2.3", ["a.zip"])
    assert changes == [(f"{PLACEHOLDER}/a.zip", "s3://bkt/n/1.2.3/a.zip")]
    assert recipe["manifests"][0]["artifacts"][0] == {"uri": "s3://bkt/n/1.2.3/a.zip"}
    assert recipe["manifests"][0]["artifacts"][1] == {"Uri": "s3://other/b.zip"}
    with pytest.raises(PublishError, match="was not built"):
        rewrite_artifact_uris(recipe | {"manifests": [{"artifacts": [
            {"uri": f"{PLACEHOLDER}/c.zip"}]}]}, "bkt", "n", "1.2.3", ["a.zip"])


def test_invalid_bucket_prefix_is_refused():
    with pytest.raises(PublishError, match="invalid bucket name"):
        artifact_bucket("My_Bucket", "eu-west-1", ACCOUNT)
    assert artifact_bucket("ggic-components", "us-east-1", ACCOUNT) == \
        f"ggic-components-us-east-1-{ACCOUNT}"


def test_component_selection_and_gdk_defaults(build, tmp_path):
    assert [c.name for c in find_built_components(build, ["com.custom.requester"])] == [
        "com.custom.requester"]
    with pytest.raises(PublishError, match="no recipe for com.example.Missing"):
        find_built_components(build, ["com.example.Missing"])
    assert publish_settings_from_gdk_config(REPO / "greengrass-build") == {
        "bucket": "ggic-components", "region": "us-east-1"}
    assert publish_settings_from_gdk_config(tmp_path / "greengrass-build") == {}


# --- waiting for DEPLOYABLE -----------------------------------------------------------------


def _published_with_wait(s, build, states, timeout=60.0):
    s["s3"].add_response("head_bucket", {})
    s["s3"].add_response("get_bucket_location", {"LocationConstraint": "eu-west-1"})
    s["s3"].add_response("put_object", {"ETag": '"e"'})
    response = created("com.custom.requester", "1.0.0")
    s["greengrassv2"].add_response("create_component_version", response)
    for state in states:
        s["greengrassv2"].add_response("describe_component", {"status": state},
                                       {"arn": response["arn"]})
    poller, clock = manual_poller(timeout, interval=5)
    result = publish_build(s.aws(ACCOUNT), build, bucket="my-artifacts",
                           components=["com.custom.requester"], wait=poller)
    return result, clock


def test_wait_until_deployable(stubs, build):
    s = stubs("eu-west-1")
    (item,), clock = _published_with_wait(s, build, [{"componentState": "REQUESTED"},
                                                     {"componentState": "INITIATED"},
                                                     {"componentState": "DEPLOYABLE"}])
    assert item.state == "DEPLOYABLE"
    assert clock.sleeps == [5, 5]


def test_a_failed_component_surfaces_greengrass_errors(stubs, build):
    s = stubs("eu-west-1")
    with pytest.raises(CloudError) as err:
        _published_with_wait(s, build, [{
            "componentState": "FAILED", "message": "artifact check failed",
            "errors": {"s3://my-artifacts/x.zip": "ACCESS_DENIED"}}])
    assert err.value.code == "ComponentFailed"
    assert "artifact check failed" in str(err.value) and "ACCESS_DENIED" in str(err.value)


def test_waiting_gives_up_after_the_timeout(stubs, build):
    s = stubs("eu-west-1")
    with pytest.raises(WaitTimeout) as err:
        _published_with_wait(s, build, [{"componentState": "REQUESTED"}] * 3, timeout=10)
    assert err.value.last_state == "REQUESTED"
