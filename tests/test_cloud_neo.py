"""SageMaker Neo compilation through Stubbers: request shape per target, polling, download."""

from __future__ import annotations

import datetime as dt
import io
import json
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("boto3")
from botocore.response import StreamingBody  # noqa: E402

from ggic.cloud.aws import CloudError, Poller, WaitTimeout  # noqa: E402
from ggic.cloud.neo import (  # noqa: E402
    CompilationFailed,
    CompilationRequest,
    NeoInputError,
    NeoTarget,
    check_pytorch_archive,
    compile_model,
    default_job_name,
    parse_shape,
)
from ggic.cloud.stubbed import FAKE_ACCOUNT as ACCOUNT  # noqa: E402
from ggic.cloud.stubbed import ManualClock, StubbedAws, manual_poller, offline_environment  # noqa: E402

ROLE = f"arn:aws:iam::{ACCOUNT}:role/ggic-neo"
BUCKET = "ggic-models"
NOW = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch, tmp_path):
    offline_environment(monkeypatch, tmp_path)


def poller(timeout: float = 600.0) -> tuple[Poller, ManualClock]:
    return manual_poller(timeout, interval=30)


def torchscript_bytes() -> bytes:
    """What torch.jit.save writes: a zip with code/ and data.pkl under one folder."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("model/data.pkl", pickle.dumps({"weights": [0.0]}))
        z.writestr("model/code/__torch__.py", "class VGG(Module):\n  pass\n")
        z.writestr("model/constants.pkl", pickle.dumps(()))
        z.writestr("model/version", "3\n")
    return out.getvalue()


def state_dict_bytes() -> bytes:
    """What torch.save(model.state_dict()) writes: a zip without code/."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"classifier.0.weight": 1}))
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def model_archive(tmp_path) -> Path:
    return tar_gz(tmp_path / "model.tar.gz", {"model.pth": torchscript_bytes()})


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def expected_request(job: str, output_config: dict) -> dict:
    return {
        "CompilationJobName": job,
        "RoleArn": ROLE,
        "InputConfig": {
            "S3Uri": f"s3://{BUCKET}/ggic-neo/{job}/input/model.tar.gz",
            "DataInputConfig": json.dumps({"input0": [1, 3, 224, 224]}),
            "Framework": "PYTORCH",
            "FrameworkVersion": "1.8",
        },
        "OutputConfig": {"S3OutputLocation": f"s3://{BUCKET}/ggic-neo/{job}/output",
                         **output_config},
        "StoppingCondition": {"MaxRuntimeInSeconds": 900},
    }


def queue_compilation(s: StubbedAws, job: str, output_config: dict, statuses: list[dict],
                      compiled: bytes | None = None) -> list[dict]:
    s["s3"].add_response("head_bucket", {}, {"Bucket": BUCKET})
    s["s3"].add_response("get_bucket_location", {"LocationConstraint": "eu-west-1"})
    uploads = s.capture("s3", "PutObject")
    s["s3"].add_response("put_object", {"ETag": '"e"'})
    s["sagemaker"].add_response(
        "create_compilation_job",
        {"CompilationJobArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:compilation-job/{job}"},
        expected_request(job, output_config))
    for status in statuses:
        s["sagemaker"].add_response("describe_compilation_job", status,
                                    {"CompilationJobName": job})
    if compiled is not None:
        key = statuses[-1]["ModelArtifacts"]["S3ModelArtifacts"].split("/", 3)[3]
        s["s3"].add_response("get_object", {"Body": body(compiled),
                                            "ContentLength": len(compiled)},
                             {"Bucket": BUCKET, "Key": key})
    return uploads


def status(value: str, job: str = "job-1", **extra) -> dict:
    """A complete DescribeCompilationJob response (Stubber checks every required member)."""
    return {
        "CompilationJobName": job,
        "CompilationJobArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:compilation-job/{job}",
        "CompilationJobStatus": value,
        "StoppingCondition": {"MaxRuntimeInSeconds": 900},
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
        "FailureReason": "",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/ggic-neo/{job}/output/"},
        "RoleArn": ROLE,
        "InputConfig": {"S3Uri": f"s3://{BUCKET}/ggic-neo/{job}/input/model.tar.gz",
                        "Framework": "PYTORCH"},
        "OutputConfig": {"S3OutputLocation": f"s3://{BUCKET}/ggic-neo/{job}/output"},
        **extra,
    }


def completed(job: str, target: str) -> dict:
    return status("COMPLETED", job, ModelArtifacts={
        "S3ModelArtifacts": f"s3://{BUCKET}/ggic-neo/{job}/output/model-{target}.tar.gz"})


ARCH_OUTPUTS = {
    "X86_64": {"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"}},
    "ARM64": {"TargetPlatform": {"Os": "LINUX", "Arch": "ARM64"}},
    "ARM_EABIHF": {"TargetPlatform": {"Os": "LINUX", "Arch": "ARM_EABIHF"},
                   "CompilerOptions": json.dumps({"mattr": ["+neon"]})},
}


@pytest.mark.parametrize("arch", sorted(ARCH_OUTPUTS))
def test_compile_request_shape_polling_and_download(stubs, model_archive, tmp_path, arch):
    s = stubs()
    job = f"job-{arch.lower().replace('_', '-')}"
    compiled = b"compiled archive bytes"
    uploads = queue_compilation(s, job, ARCH_OUTPUTS[arch], [
        status("STARTING", job), status("INPROGRESS", job), completed(job, f"LINUX_{arch}")],
        compiled)
    wait, clock = poller()

    result = compile_model(s.aws(ACCOUNT), model_archive, bucket=BUCKET, role_arn=ROLE,
                           target=NeoTarget(arch=arch), download_dir=tmp_path / "out",
                           poller=wait, job_name=job)

    assert [(u["Bucket"], u["Key"]) for u in uploads] == [
        (BUCKET, f"ggic-neo/{job}/input/model.tar.gz")]
    assert clock.sleeps == [30, 30]
    assert result.archive == tmp_path / "out" / f"model-LINUX_{arch}.tar.gz"
    assert result.archive.read_bytes() == compiled
    assert result.compiled_uri.endswith(f"/output/model-LINUX_{arch}.tar.gz")
    assert not list((tmp_path / "out").glob("*.part"))


def test_target_device_and_custom_options_in_the_request():
    target = NeoTarget(device="jetson_nano", compiler_options={"gpu-code": "sm_53"})
    request = CompilationRequest("j", ROLE, "s3://b/in.tar.gz", "s3://b/out", target,
                                 framework_version="1.7", input_shape=(1, 3, 299, 299))
    api = request.to_api()
    assert api["OutputConfig"] == {"S3OutputLocation": "s3://b/out",
                                   "TargetDevice": "jetson_nano",
                                   "CompilerOptions": '{"gpu-code": "sm_53"}'}
    assert json.loads(api["InputConfig"]["DataInputConfig"]) == {"input0": [1, 3, 299, 299]}
    assert api["InputConfig"]["FrameworkVersion"] == "1.7"
    assert target.platform.architecture == "aarch64"
    assert NeoTarget(device="sitara_am57x").platform.architecture is None
    assert NeoTarget(arch="X86_64").platform.manifest_platform() == {
        "os": "linux", "architecture": "amd64"}
    assert NeoTarget(arch="ARM_EABIHF").platform.architecture == "arm"
    with pytest.raises(NeoInputError):
        NeoTarget(arch="X86_64", device="rasp3b")
    with pytest.raises(NeoInputError):
        NeoTarget(arch="MIPS")


@pytest.mark.parametrize(("final", "code"), [("FAILED", "CompilationFailed"),
                                             ("STOPPED", "CompilationStopped")])
def test_a_failed_job_surfaces_the_failure_reason(stubs, model_archive, tmp_path, final, code):
    s = stubs()
    reason = "ClientError: InputConfiguration: Unable to load PyTorch model: not TorchScript"
    queue_compilation(s, "job-1", ARCH_OUTPUTS["X86_64"],
                      [status("INPROGRESS"), status(final, FailureReason=reason)])
    wait, _ = poller()
    with pytest.raises(CompilationFailed) as err:
        compile_model(s.aws(ACCOUNT), model_archive, bucket=BUCKET, role_arn=ROLE,
                      target=NeoTarget(arch="X86_64"), download_dir=tmp_path, poller=wait,
                      job_name="job-1")
    assert err.value.code == code
    assert err.value.reason == reason
    assert reason in str(err.value) and "CloudWatch" in str(err.value)
    assert not list(tmp_path.glob("model-*"))


def test_polling_gives_up_at_the_timeout(stubs, model_archive, tmp_path):
    s = stubs()
    queue_compilation(s, "job-1", ARCH_OUTPUTS["X86_64"], [status("INPROGRESS")] * 3)
    wait, _ = poller(timeout=60)
    with pytest.raises(WaitTimeout) as err:
        compile_model(s.aws(ACCOUNT), model_archive, bucket=BUCKET, role_arn=ROLE,
                      target=NeoTarget(arch="X86_64"), download_dir=tmp_path, poller=wait,
                      job_name="job-1")
    assert err.value.last_state == "INPROGRESS"


def test_an_existing_job_name_is_a_clear_error(stubs, model_archive, tmp_path):
    s = stubs()
    s["s3"].add_response("head_bucket", {})
    s["s3"].add_response("get_bucket_location", {"LocationConstraint": "eu-west-1"})
    s["s3"].add_response("put_object", {"ETag": '"e"'})
    s["sagemaker"].add_client_error("create_compilation_job", "ResourceInUse",
                                    "Job name must be unique", http_status_code=400)
    wait, _ = poller()
    with pytest.raises(CloudError) as err:
        compile_model(s.aws(ACCOUNT), model_archive, bucket=BUCKET, role_arn=ROLE,
                      target=NeoTarget(arch="ARM64"), download_dir=tmp_path, poller=wait,
                      job_name="job-1")
    assert err.value.code == "ResourceInUse"
    assert "--job-name" in err.value.hint


def test_bad_inputs_are_refused_before_any_call(stubs, model_archive, tmp_path):
    s = stubs()
    wait, _ = poller()
    kwargs = {"bucket": BUCKET, "target": NeoTarget(arch="X86_64"), "download_dir": tmp_path,
              "poller": wait}
    with pytest.raises(NeoInputError, match="IAM role ARN"):
        compile_model(s.aws(ACCOUNT), model_archive, role_arn="ggic-neo", **kwargs)
    with pytest.raises(NeoInputError, match="job name"):
        compile_model(s.aws(ACCOUNT), model_archive, role_arn=ROLE, job_name="bad_name",
                      **kwargs)


# --- the input archive ----------------------------------------------------------------------


def test_a_torchscript_archive_passes(model_archive):
    assert check_pytorch_archive(model_archive) == "model.pth"


@pytest.mark.parametrize(("members", "message"), [
    ({"model.pth": state_dict_bytes()}, "not a TorchScript model"),
    ({"model.pth": pickle.dumps({"w": 1})}, "not a TorchScript model"),
    ({"weights.bin": b"x"}, "exactly one .pth"),
    ({"a.pth": torchscript_bytes(), "b.pth": torchscript_bytes()}, "exactly one .pth"),
    ({"../model.pth": torchscript_bytes()}, "'..'"),
])
def test_unusable_archives_are_refused_with_how_to_fix(tmp_path, members, message):
    with pytest.raises(NeoInputError, match=message):
        check_pytorch_archive(tar_gz(tmp_path / "m.tar.gz", members))


def test_an_uncompressed_tar_is_refused(tmp_path):
    plain = tmp_path / "model.tar"
    with tarfile.open(plain, "w") as tar:
        info = tarfile.TarInfo("model.pth")
        data = torchscript_bytes()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(NeoInputError, match="not gzip"):
        check_pytorch_archive(plain)


def test_job_names_and_shapes():
    name = default_job_name(NeoTarget(arch="ARM_EABIHF"), now=lambda: 1714521600.0)
    assert name == "ggic-neo-linux-arm-eabihf-20240501-000000"
    assert parse_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_shape("1x3x299x299") == (1, 3, 299, 299)
    for bad in ("", "1,a", "1,0,3"):
        with pytest.raises(NeoInputError):
            parse_shape(bad)
