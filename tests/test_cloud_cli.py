"""``ggic cloud ...`` end to end with stubbed clients: output for humans, exit codes 0/1/2."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("boto3")
from botocore.response import StreamingBody  # noqa: E402

import ggic.cloud.cli as cloud_cli  # noqa: E402
from ggic.cloud.aws import Poller  # noqa: E402
from ggic.cloud.stubbed import FAKE_ACCOUNT as ACCOUNT  # noqa: E402
from ggic.cloud.stubbed import StubbedAws, offline_environment  # noqa: E402
from ggic.gdk_build import build_all  # noqa: E402
from ggic.modelgen.testnets import write_neo_like  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ggic-neo"


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch, tmp_path):
    offline_environment(monkeypatch, tmp_path)


@pytest.fixture
def aws(monkeypatch):
    """Stubbed clients behind ``ggic cloud``; polling never sleeps."""
    stubs = StubbedAws("eu-west-1")
    seen_regions = []

    def make_clients(args):
        seen_regions.append(args.region)
        clients = stubs.aws(ACCOUNT)
        clients.region_name = args.region or stubs.region
        return clients

    monkeypatch.setattr(cloud_cli, "make_clients", make_clients)
    monkeypatch.setattr(cloud_cli, "make_poller", lambda timeout, interval: Poller(
        timeout=timeout, interval=interval, clock=lambda: 0.0, sleep=lambda _s: None))
    stubs.regions = seen_regions
    yield stubs
    stubs.verify()


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ggic")
    cloud_cli.add_cloud_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cloud_without_a_command_prints_help(capsys):
    assert run(["cloud"]) == 2
    assert "neo-compile" in capsys.readouterr().out


def test_every_command_has_help(capsys):
    for command in ("publish", "deploy", "neo-compile", "model-component"):
        with pytest.raises(SystemExit) as exit_:
            run(["cloud", command, "--help"])
        assert exit_.value.code == 0
        assert len(capsys.readouterr().out) > 400


# --- publish --------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path) -> Path:
    """A build folder with the repository's gdk-config.json beside it."""
    build = tmp_path / "greengrass-build"
    build_all(REPO, build)
    shutil.copy(REPO / "gdk-config.json", tmp_path / "gdk-config.json")
    return build


def test_publish_uses_gdk_config_defaults(aws, project, capsys):
    bucket = f"ggic-components-us-east-1-{ACCOUNT}"
    aws["s3"].add_response("head_bucket", {}, {"Bucket": bucket})
    aws["s3"].add_response("get_bucket_location", {}, {"Bucket": bucket})
    for name in ("com.custom.ImageClassifier", "com.custom.requester"):
        aws["s3"].add_response("put_object", {"ETag": '"e"'})
        aws["greengrassv2"].add_response("create_component_version", {
            "arn": f"arn:aws:greengrass:us-east-1:{ACCOUNT}:components:{name}:versions:1.0.0",
            "componentName": name, "componentVersion": "1.0.0", "creationTimestamp": NOW,
            "status": {"componentState": "REQUESTED"}})
    assert run(["cloud", "publish", "--build-dir", str(project)]) == 0
    out = capsys.readouterr().out
    assert "published com.custom.requester 1.0.0 (REQUESTED)" in out
    assert f"s3://{bucket}/com.custom.ImageClassifier/1.0.0/ggic.zip" in out
    assert aws.regions == ["us-east-1"]


def test_publish_usage_errors_exit_2(aws, tmp_path, capsys):
    assert run(["cloud", "publish", "--build-dir", str(tmp_path / "absent")]) == 2
    (tmp_path / "greengrass-build").mkdir()
    assert run(["cloud", "publish", "--build-dir", str(tmp_path / "greengrass-build")]) == 2
    assert "--bucket-prefix" in capsys.readouterr().err


def test_publish_aws_failure_exits_1(aws, project, capsys):
    aws["s3"].add_client_error("head_bucket", "403", http_status_code=403)
    assert run(["cloud", "publish", "--build-dir", str(project), "--bucket", "taken"]) == 1
    assert "another account" in capsys.readouterr().err


# --- deploy ---------------------------------------------------------------------------------


def test_deploy_and_wait_for_a_failure_exits_1(aws, capsys):
    thing_arn = f"arn:aws:iot:eu-west-1:{ACCOUNT}:thing/edge-1"
    aws["greengrassv2"].add_response("create_deployment", {"deploymentId": "d-1"}, {
        "targetArn": thing_arn,
        "components": {"com.custom.ImageClassifier": {
            "componentVersion": "1.0.0",
            "configurationUpdate": {"merge": '{"TopK":"3"}', "reset": ["/ModelDir"]}}}})
    aws["greengrassv2"].add_response("list_effective_deployments", {"effectiveDeployments": [{
        "deploymentId": "d-1", "deploymentName": "x", "targetArn": thing_arn,
        "coreDeviceExecutionStatus": "FAILED", "reason": "install script failed",
        "creationTimestamp": NOW, "modifiedTimestamp": NOW}]})
    aws["greengrassv2"].add_response("get_core_device", {"status": "UNHEALTHY"})
    code = run(["cloud", "deploy", "--target", "thing/edge-1",
                "--component", "com.custom.ImageClassifier=1.0.0",
                "--update-config", '{"com.custom.ImageClassifier": {"MERGE": {"TopK": "3"}, '
                                   '"RESET": ["/ModelDir"]}}', "--wait"])
    assert code == 1
    out = capsys.readouterr().out
    assert "deployment d-1 created" in out and "install script failed" in out


@pytest.mark.parametrize("argv", [
    ["--target", "edge-1"],
    ["--target", "edge-1", "--component", "a=1.0.0", "--update-config", "{bad"],
    ["--target", "thinggroup/line", "--component", "a=1.0.0", "--wait"],
])
def test_deploy_usage_errors_exit_2_without_calls(aws, argv):
    assert run(["cloud", "deploy", *argv]) == 2


# --- Neo ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[bytes, Path]:
    root = tmp_path_factory.mktemp("neo")
    net = write_neo_like(root)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for file in sorted(net.model_dir.iterdir()):
            tar.add(file, arcname=file.name)
    return data.getvalue(), net.labels_path


def torchscript_archive(path: Path) -> Path:
    import zipfile

    pth = io.BytesIO()
    with zipfile.ZipFile(pth, "w") as z:
        z.writestr("m/code/__torch__.py", "")
        z.writestr("m/data.pkl", b"")
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("model.pth")
        info.size = len(pth.getvalue())
        tar.addfile(info, io.BytesIO(pth.getvalue()))
    return path


def test_neo_compile_end_to_end(aws, compiled, tmp_path, capsys):
    data, labels = compiled
    job = "vgg16-arm64"
    key = f"ggic-neo/{job}/output/model-LINUX_ARM64.tar.gz"
    aws["s3"].add_response("head_bucket", {})
    aws["s3"].add_response("get_bucket_location", {"LocationConstraint": "eu-west-1"})
    aws["s3"].add_response("put_object", {"ETag": '"e"'})
    aws["sagemaker"].add_response("create_compilation_job", {
        "CompilationJobArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:compilation-job/{job}"})
    aws["sagemaker"].add_response("describe_compilation_job", {
        "CompilationJobName": job, "CompilationJobArn": "arn:aws:sagemaker:x",
        "CompilationJobStatus": "COMPLETED", "StoppingCondition": {},
        "CreationTime": NOW, "LastModifiedTime": NOW, "FailureReason": "",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://models/{key}"}, "RoleArn": ROLE,
        "InputConfig": {"S3Uri": "s3://models/in", "Framework": "PYTORCH"},
        "OutputConfig": {"S3OutputLocation": "s3://models/out"}})
    aws["s3"].add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))},
                           {"Bucket": "models", "Key": key})
    out = tmp_path / "out"
    code = run(["cloud", "neo-compile", "--model", str(torchscript_archive(tmp_path / "m.tgz")),
                "--bucket", "models", "--role-arn", ROLE, "--arch", "ARM64", "--out", str(out),
                "--job-name", job, "--component-name", "com.example.VGG16Model",
                "--labels", str(labels), "--poll-interval", "0"])
    assert code == 0
    text = capsys.readouterr().out
    assert f"compilation job {job} COMPLETED" in text
    assert "{com.example.VGG16Model:artifacts:decompressedPath}/neo-model/model" in text
    assert "Linux aarch64" in text
    assert (out / "model-LINUX_ARM64.tar.gz").read_bytes() == data
    assert (out / "model" / "compiled.so").is_file()
    assert (out / "greengrass-build" / "recipes" / "com.example.VGG16Model.yaml").is_file()
    assert json.loads((out / "classifier-config.json").read_text())


def test_neo_compile_bad_model_exits_2_without_calls(aws, tmp_path, capsys):
    bad = tmp_path / "model.tar.gz"
    bad.write_bytes(b"plain text")
    code = run(["cloud", "neo-compile", "--model", str(bad), "--bucket", "models",
                "--role-arn", ROLE, "--arch", "X86_64", "--out", str(tmp_path / "o"),
                "--component-name", "com.example.M"])
    assert code == 2
    assert "not gzip-compressed" in capsys.readouterr().err


def test_model_component_offline(compiled, tmp_path, capsys):
    data, labels = compiled
    archive = tmp_path / "model-LINUX_X86_64.tar.gz"
    archive.write_bytes(data)
    code = run(["cloud", "model-component", "--compiled", str(archive), "--arch", "X86_64",
                "--out", str(tmp_path / "o"), "--component-name", "com.example.VGG16Model",
                "--component-version", "2.0.0", "--labels", str(labels),
                "--greengrass-root", "/opt/gg"])
    assert code == 0
    text = capsys.readouterr().out
    assert ("/opt/gg/packages/artifacts-unarchived/com.example.VGG16Model/2.0.0/neo-model/model"
            in text)
    assert "DIRECT dependency" in text


def test_model_component_unsafe_archive_exits_1(tmp_path, capsys):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    code = run(["cloud", "model-component", "--compiled", str(archive), "--arch", "X86_64",
                "--out", str(tmp_path / "o"), "--component-name", "com.example.M"])
    assert code == 1
    assert "refusing the archive" in capsys.readouterr().err
