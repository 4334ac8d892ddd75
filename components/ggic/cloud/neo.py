"""Compile a PyTorch model with SageMaker Neo for a Greengrass device, without Edge Manager.

SageMaker Edge Manager (and its packaging jobs and agent) was discontinued on 2024-04-26;
Neo compilation still exists and its output is a DLR model directory the classifier loads
directly. The steps, each a plain API call:

1. check the input: a ``.tar.gz`` holding a TorchScript ``model.pth``
   (``torch.jit.save(torch.jit.trace(model.eval(), torch.rand(1, 3, 224, 224)), "model.pth")``;
   a state dict alone cannot be compiled);
2. upload it to ``s3://<bucket>/<prefix>/<job>/input/model.tar.gz``;
3. CreateCompilationJob: Framework PYTORCH, FrameworkVersion (1.8 by default; Neo's edge
   targets list PyTorch 1.7 and 1.8), DataInputConfig ``{"input0": [1, 3, 224, 224]}``, and
   either TargetPlatform ``{"Os": "LINUX", "Arch": X86_64 | ARM64 | ARM_EABIHF}`` (CPU, no
   accelerator; ARM_EABIHF gets ``{"mattr": ["+neon"]}`` compiler options, AWS's advice for
   32-bit ARM) or a TargetDevice such as ``jetson_nano``;
4. DescribeCompilationJob until COMPLETED, FAILED or STOPPED (FailureReason surfaced);
5. download ``ModelArtifacts.S3ModelArtifacts`` (``model-<target>.tar.gz``).
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import tarfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from .aws import (
    AwsClients,
    CloudError,
    Poller,
    aws_errors,
    download_file,
    ensure_bucket,
    parse_s3_uri,
    upload_file,
)
from .safe_tar import UnsafeArchiveError, check_members

log = logging.getLogger(__name__)

FRAMEWORK = "PYTORCH"
DEFAULT_FRAMEWORK_VERSION = "1.8"
DEFAULT_INPUT_NAME = "input0"
DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
DEFAULT_MAX_RUNTIME_S = 900
DEFAULT_PREFIX = "ggic-neo"


@dataclass(frozen=True)
class GreengrassPlatform:
    """The recipe manifest platform a compiled model runs on."""

    architecture: str | None
    label: str

    def manifest_platform(self) -> dict[str, str]:
        platform = {"os": "linux"}
        if self.architecture:
            platform["architecture"] = self.architecture
        return platform


#: TargetPlatform architectures (Os LINUX, CPU) and the nucleus's name for each.
ARCH_PLATFORMS: dict[str, GreengrassPlatform] = {
    "X86_64": GreengrassPlatform("amd64", "Linux x86_64"),
    "ARM64": GreengrassPlatform("aarch64", "Linux aarch64"),
    "ARM_EABIHF": GreengrassPlatform("arm", "Linux armv7l (hard float)"),
}
#: AWS's advice for 32-bit ARM CPUs with NEON (every Raspberry Pi 2 and later).
DEFAULT_COMPILER_OPTIONS: dict[str, dict[str, Any]] = {"ARM_EABIHF": {"mattr": ["+neon"]}}
#: The Linux devices among Neo's TargetDevice values whose architecture is certain.
DEVICE_PLATFORMS: dict[str, GreengrassPlatform] = {
    "jetson_tx1": GreengrassPlatform("aarch64", "NVIDIA Jetson TX1"),
    "jetson_tx2": GreengrassPlatform("aarch64", "NVIDIA Jetson TX2"),
    "jetson_nano": GreengrassPlatform("aarch64", "NVIDIA Jetson Nano"),
    "jetson_xavier": GreengrassPlatform("aarch64", "NVIDIA Jetson Xavier"),
    "rasp3b": GreengrassPlatform("arm", "Raspberry Pi 3 Model B"),
}


class NeoInputError(ValueError):
    """The model archive or the compilation settings cannot work; nothing was sent."""


class CompilationFailed(CloudError):
    """The compilation job ended FAILED or STOPPED."""

    def __init__(self, job_name: str, status: str, reason: str) -> None:
        super().__init__(
            f"compilation job {job_name}",
            "CompilationFailed" if status == "FAILED" else "CompilationStopped",
            f"{status}: {reason or 'no FailureReason given'}",
            "the job's log is in CloudWatch Logs (/aws/sagemaker/CompilationJobs); a common "
            "cause is a model.pth that is not TorchScript, or a DataInputConfig that does not "
            "match the model's input",
        )
        self.job_name = job_name
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class NeoTarget:
    """Where the model will run: a TargetPlatform architecture or a TargetDevice."""

    arch: str | None = None
    device: str | None = None
    compiler_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if bool(self.arch) == bool(self.device):
            raise NeoInputError("give either an architecture (TargetPlatform) or a "
                                "TargetDevice, not both")
        if self.arch and self.arch not in ARCH_PLATFORMS:
            raise NeoInputError(f"architecture {self.arch!r}: use one of "
                                f"{', '.join(ARCH_PLATFORMS)}")

    @property
    def label(self) -> str:
        return f"LINUX_{self.arch}" if self.arch else str(self.device)

    @property
    def platform(self) -> GreengrassPlatform:
        if self.arch:
            return ARCH_PLATFORMS[self.arch]
        known = DEVICE_PLATFORMS.get(str(self.device))
        return known or GreengrassPlatform(None, f"Linux ({self.device})")

    def output_config(self, s3_output: str) -> dict[str, Any]:
        config: dict[str, Any] = {"S3OutputLocation": s3_output}
        if self.arch:
            config["TargetPlatform"] = {"Os": "LINUX", "Arch": self.arch}
        else:
            config["TargetDevice"] = self.device
        options = self.compiler_options
        if options is None and self.arch:
            options = DEFAULT_COMPILER_OPTIONS.get(self.arch)
        if options:
            config["CompilerOptions"] = json.dumps(dict(options))
        return config


@dataclass(frozen=True)
class CompilationRequest:
    job_name: str
    role_arn: str
    input_uri: str
    output_uri: str
    target: NeoTarget
    framework_version: str = DEFAULT_FRAMEWORK_VERSION
    input_name: str = DEFAULT_INPUT_NAME
    input_shape: tuple[int, ...] = DEFAULT_INPUT_SHAPE
    max_runtime_s: int = DEFAULT_MAX_RUNTIME_S

    def to_api(self) -> dict[str, Any]:
        """The keyword arguments of sagemaker ``create_compilation_job``."""
        return {
            "CompilationJobName": self.job_name,
            "RoleArn": self.role_arn,
            "InputConfig": {
                "S3Uri": self.input_uri,
                "DataInputConfig": json.dumps({self.input_name: list(self.input_shape)}),
                "Framework": FRAMEWORK,
                "FrameworkVersion": self.framework_version,
            },
            "OutputConfig": self.target.output_config(self.output_uri),
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_runtime_s},
        }


@dataclass(frozen=True)
class NeoResult:
    job_name: str
    job_arn: str
    input_uri: str
    compiled_uri: str
    archive: Path
    target: NeoTarget = field(compare=False)


# --- checks ---------------------------------------------------------------------------------

_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


def check_job_name(name: str) -> str:
    if not _JOB_NAME.match(name):
        raise NeoInputError(f"compilation job name {name!r}: 1-63 letters, digits and '-', "
                            "starting and ending with a letter or digit")
    return name


def check_role_arn(role_arn: str) -> str:
    if not _ROLE_ARN.match(role_arn):
        raise NeoInputError(
            f"{role_arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>); the "
            "role must trust sagemaker.amazonaws.com and read/write the bucket")
    return role_arn


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise NeoInputError(f"input shape {text!r}: use numbers like 1,3,224,224") from None
    if not shape or any(d <= 0 for d in shape):
        raise NeoInputError(f"input shape {text!r}: use positive numbers like 1,3,224,224")
    return shape


def default_job_name(target: NeoTarget, now: Callable[[], float] = time.time) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now()))
    label = re.sub(r"[^a-z0-9]+", "-", target.label.lower()).strip("-")
    return check_job_name(f"{DEFAULT_PREFIX}-{label}-{stamp}"[:63].rstrip("-"))


def _is_torchscript(data: Any) -> bool | None:
    """True for a TorchScript zip (has code/), False for a plain state dict, None if unsure."""
    try:
        with zipfile.ZipFile(data) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        return False  # legacy torch.save pickle: never TorchScript
    except (OSError, EOFError, tarfile.TarError):
        return None
    return any("/code/" in f"/{n}" for n in names)


def check_pytorch_archive(path: Path) -> str:
    """The TorchScript file's name in a Neo PyTorch input archive; NeoInputError otherwise."""
    if not path.is_file():
        raise NeoInputError(f"{path} does not exist")
    with path.open("rb") as f:
        if f.read(2) != b"\x1f\x8b":
            raise NeoInputError(f"{path} is not gzip-compressed: Neo takes a .tar.gz "
                                "(tar czf model.tar.gz model.pth)")
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            members = tar.getmembers()
            check_members(members)
            models = [m for m in members if m.isfile()
                      and PurePosixPath(m.name).suffix in (".pth", ".pt")]
            if len(models) != 1:
                found = ", ".join(m.name for m in models) or "none"
                raise NeoInputError(
                    f"{path} must hold exactly one .pth model (found: {found}); create it "
                    "with torch.jit.save(torch.jit.trace(model.eval(), example), 'model.pth') "
                    "and `tar czf model.tar.gz model.pth`")
            extracted = tar.extractfile(models[0])
            scripted = _is_torchscript(extracted) if extracted is not None else None
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise NeoInputError(f"{path} is not a readable .tar.gz: {exc}") from None
    except UnsafeArchiveError as exc:
        raise NeoInputError(f"{path}: {exc}") from None
    if scripted is False:
        raise NeoInputError(
            f"{models[0].name} in {path} is not a TorchScript model (a state dict or pickled "
            "module): Neo needs torch.jit.trace(model.eval(), example) saved with "
            "torch.jit.save")
    if scripted is None:
        log.warning("could not tell whether %s is TorchScript; Neo needs a traced model",
                    models[0].name)
    return models[0].name


# --- calls ----------------------------------------------------------------------------------

_CREATE_HINTS = {
    "ResourceInUse": "a compilation job with this name exists: choose another --job-name",
    "ResourceLimitExceeded": "the account's limit of concurrent compilation jobs is reached: "
                             "wait for running jobs or ask for a higher quota",
    "ValidationException": "SageMaker refused the request: check the role (it must trust "
                           "sagemaker.amazonaws.com), the framework version and the input "
                           "shape",
    "AccessDeniedException": "the credentials need sagemaker:CreateCompilationJob and "
                             "iam:PassRole on the role",
}


def start_compilation(clients: AwsClients, request: CompilationRequest) -> str:
    with aws_errors("CreateCompilationJob", "sagemaker", _CREATE_HINTS):
        response = clients.client("sagemaker").create_compilation_job(**request.to_api())
    arn = str(response["CompilationJobArn"])
    log.info("started compilation job %s (%s)", request.job_name, arn)
    return arn


def wait_for_compilation(clients: AwsClients, job_name: str, poller: Poller) -> str:
    """Poll until the job ends; the compiled model's S3 URI, or CompilationFailed."""
    sagemaker = clients.client("sagemaker")
    artifacts: dict[str, str] = {}

    def poll() -> tuple[bool, str]:
        with aws_errors("DescribeCompilationJob", "sagemaker"):
            job = sagemaker.describe_compilation_job(CompilationJobName=job_name)
        status = str(job["CompilationJobStatus"])
        if status in ("FAILED", "STOPPED"):
            raise CompilationFailed(job_name, status, str(job.get("FailureReason", "")))
        if status == "COMPLETED":
            artifacts["uri"] = str((job.get("ModelArtifacts") or {}).get("S3ModelArtifacts"))
            return True, status
        return False, status

    poller.until(f"compilation job {job_name}", poll)
    return artifacts["uri"]


def compile_model(clients: AwsClients, model_archive: Path, *, bucket: str, role_arn: str,
                  target: NeoTarget, download_dir: Path, poller: Poller,
                  job_name: str | None = None, prefix: str = DEFAULT_PREFIX,
                  framework_version: str = DEFAULT_FRAMEWORK_VERSION,
                  input_name: str = DEFAULT_INPUT_NAME,
                  input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE,
                  max_runtime_s: int = DEFAULT_MAX_RUNTIME_S,
                  create_bucket: bool = False) -> NeoResult:
    """Upload, compile, wait and download: the compiled archive in ``download_dir``."""
    check_role_arn(role_arn)
    check_pytorch_archive(model_archive)
    name = check_job_name(job_name) if job_name else default_job_name(target)
    s3 = clients.client("s3")
    ensure_bucket(s3, bucket, clients.region, create=create_bucket)
    base = f"{prefix.strip('/')}/{name}"
    input_uri = upload_file(s3, model_archive, bucket, f"{base}/input/model.tar.gz")
    request = CompilationRequest(
        job_name=name, role_arn=role_arn, input_uri=input_uri,
        output_uri=f"s3://{bucket}/{base}/output", target=target,
        framework_version=framework_version, input_name=input_name,
        input_shape=tuple(int(d) for d in input_shape), max_runtime_s=max_runtime_s)
    arn = start_compilation(clients, request)
    compiled_uri = wait_for_compilation(clients, name, poller)
    out_bucket, key = parse_s3_uri(compiled_uri)
    archive = download_file(s3, out_bucket, key, download_dir / PurePosixPath(key).name)
    return NeoResult(name, arn, input_uri, compiled_uri, archive, target)
