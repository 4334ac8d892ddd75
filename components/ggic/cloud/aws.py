"""AWS plumbing shared by publish, deploy and Neo: clients, typed errors, S3, ARNs, polling.

Every AWS call goes through :func:`aws_errors`, which turns botocore's and boto3's exceptions
into :class:`CloudError`: the operation, the AWS error code, AWS's message and what to do.
boto3/botocore are imported lazily so that importing this module needs neither.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

US_EAST_1 = "us-east-1"
INSTALL_HINT = "install the cloud extra: pip install 'ggic[cloud]' (boto3)"

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class CloudError(RuntimeError):
    """An AWS operation failed: ``code`` is AWS's error code (or a botocore condition such as
    ``NoCredentials``), ``hint`` says what to do about it."""

    def __init__(self, operation: str, code: str, message: str, hint: str = "") -> None:
        self.operation = operation
        self.code = code
        self.aws_message = message
        self.hint = hint
        text = f"{operation} failed: {code}"
        if message:
            text += f": {message}"
        if hint:
            text += f". {hint}"
        super().__init__(text)


class WaitTimeout(CloudError):
    """Polling gave up before the awaited state was reached."""

    def __init__(self, what: str, timeout: float, last_state: str) -> None:
        super().__init__(
            f"waiting for {what}",
            "Timeout",
            f"still {last_state} after {timeout:g} s",
            "wait longer (--timeout) or check the state in the AWS console",
        )
        self.last_state = last_state


# --- errors ---------------------------------------------------------------------------------

_IAM_PREFIX = {"s3": "s3", "greengrassv2": "greengrass", "sagemaker": "sagemaker",
               "sts": "sts", "iam": "iam"}

_GENERIC_HINTS = {
    "NoCredentials": "no AWS credentials were found: set AWS_PROFILE (after `aws configure` or "
                     "`aws sso login`) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
    "NoRegion": "no AWS region: pass --region or set AWS_REGION",
    "EndpointConnection": "cannot reach the AWS endpoint: check the network, proxy settings "
                          "and that the region exists",
    "ExpiredToken": "the credentials have expired: refresh them (e.g. `aws sso login`)",
    "ExpiredTokenException": "the credentials have expired: refresh them (e.g. `aws sso login`)",
    "InvalidClientTokenId": "the access key is not valid in this account/partition: check the "
                            "credentials in use",
    "UnrecognizedClientException": "the access key is not valid: check the credentials in use",
    "SignatureDoesNotMatch": "the secret key does not match the access key: check the "
                             "credentials in use",
    "ThrottlingException": "AWS is rate-limiting these calls: retry in a minute",
    "Throttling": "AWS is rate-limiting these calls: retry in a minute",
    "SlowDown": "S3 is rate-limiting these calls: retry in a minute",
    "RequestAlreadyInProgressException": "the same request is still being processed: retry in "
                                         "a few seconds",
    "InternalServerException": "an error on AWS's side: retry later",
    "InternalError": "an error on AWS's side: retry later",
    "ServiceUnavailable": "the service is unavailable: retry later",
}
_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "403", "Forbidden",
                  "UnauthorizedOperation"}


def _access_hint(service: str, operation: str) -> str:
    action = f"{_IAM_PREFIX.get(service, service)}:{operation}"
    return (f"the credentials in use may not call {action}: grant it to the IAM user or role "
            "(and check bucket policies / SCPs)")


def to_cloud_error(exc: BaseException, operation: str, service: str,
                   hints: Mapping[str, str] | None = None) -> CloudError | None:
    """The :class:`CloudError` for a botocore/boto3 exception, None for anything else."""
    try:
        from boto3.exceptions import S3UploadFailedError
        from botocore import exceptions as bce
    except ImportError:  # pragma: no cover - without boto3 no AWS call could have raised
        return None
    code: str
    message: str
    if isinstance(exc, bce.StubResponseError):
        return None  # a test's Stubber saying the call was unexpected: never an AWS error
    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode", "Unknown"))
        message = str(error.get("Message") or "")
    elif isinstance(exc, S3UploadFailedError):
        found = re.search(r"\(([^()]+)\) when calling", str(exc))
        code = found.group(1) if found else "S3UploadFailed"
        message = str(exc)
    elif isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError)):
        code, message = "NoCredentials", str(exc)
    elif isinstance(exc, bce.NoRegionError):
        code, message = "NoRegion", str(exc)
    elif isinstance(exc, (bce.EndpointConnectionError, bce.ConnectTimeoutError,
                          bce.ReadTimeoutError)):
        code, message = "EndpointConnection", str(exc)
    elif isinstance(exc, bce.ParamValidationError):
        code, message = "ParamValidation", str(exc)
    elif isinstance(exc, bce.BotoCoreError):
        code, message = type(exc).__name__, str(exc)
    else:
        return None
    hint = (hints or {}).get(code) or _GENERIC_HINTS.get(code, "")
    if not hint and code in _ACCESS_DENIED:
        hint = _access_hint(service, operation)
    return CloudError(operation, code, message, hint)


@contextmanager
def aws_errors(operation: str, service: str,
               hints: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn the botocore/boto3 exceptions raised inside into :class:`CloudError`.

    ``hints`` maps error codes to advice specific to this call (they win over generic ones).
    """
    try:
        yield
    except CloudError:
        raise
    except Exception as exc:
        converted = to_cloud_error(exc, operation, service, hints)
        if converted is None:
            raise
        raise converted from exc


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "")) or None
    return None


# --- clients --------------------------------------------------------------------------------


@dataclass
class AwsClients:
    """boto3 clients for one region and profile, created on first use.

    Tests give ready clients (botocore ``Stubber``-driven) through :meth:`from_clients`.
    """

    region_name: str | None = None
    profile: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _session: Any = field(default=None, repr=False)
    _account: str | None = field(default=None, repr=False)

    @classmethod
    def from_clients(cls, region: str, clients: Mapping[str, Any],
                     account: str | None = None) -> AwsClients:
        made = cls(region_name=region)
        made._clients.update(clients)
        made._account = account
        return made

    def _boto_session(self) -> Any:
        if self._session is None:
            try:
                import boto3
            except ImportError:
                raise CloudError("loading boto3", "MissingDependency",
                                 "boto3 is not installed", INSTALL_HINT) from None
            with aws_errors("opening an AWS session", "sts"):
                self._session = boto3.session.Session(profile_name=self.profile,
                                                      region_name=self.region_name)
        return self._session

    @property
    def region(self) -> str:
        if self.region_name:
            return self.region_name
        region = self._boto_session().region_name
        if not region:
            raise CloudError("choosing a region", "NoRegion", "", _GENERIC_HINTS["NoRegion"])
        self.region_name = region
        return region

    def client(self, service: str) -> Any:
        if service not in self._clients:
            session = self._boto_session()
            self._clients[service] = session.client(service, region_name=self.region)
        return self._clients[service]

    @property
    def partition(self) -> str:
        return partition_for_region(self.region)

    def account(self) -> str:
        """The account of the credentials in use (STS GetCallerIdentity), asked once."""
        if self._account is None:
            with aws_errors("GetCallerIdentity", "sts"):
                identity = self.client("sts").get_caller_identity()
            self._account = str(identity["Account"])
            log.info("using account %s as %s", self._account, identity.get("Arn", "?"))
        return self._account


def partition_for_region(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


# --- S3 -------------------------------------------------------------------------------------

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_bucket_name(bucket: str) -> str:
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise ValueError(
            f"{bucket!r} is not a valid S3 bucket name (3-63 characters: lower-case letters, "
            "digits, '-' and '.'; starting and ending with a letter or digit)"
        )
    return bucket


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def bucket_region(s3: Any, bucket: str) -> str:
    """The bucket's region (GetBucketLocation says None for us-east-1 and EU for eu-west-1)."""
    with aws_errors("GetBucketLocation", "s3"):
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    if not location:
        return US_EAST_1
    return "eu-west-1" if location == "EU" else str(location)


def ensure_bucket(s3: Any, bucket: str, region: str, *, create: bool = True) -> bool:
    """Make sure ``bucket`` exists in ``region``; True when this call created it.

    Outside us-east-1, CreateBucket needs ``LocationConstraint`` = the region; in us-east-1
    it must be absent. A bucket of ours in another region is refused (Greengrass and Neo read
    artifacts from the bucket of their region, and GDK refuses it too).
    """
    check_bucket_name(bucket)
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("403", "AccessDenied", "Forbidden"):
            raise CloudError(
                "HeadBucket", str(code), f"bucket {bucket} exists but is not accessible",
                "bucket names are global: it belongs to another account or your credentials "
                "may not use it; choose another bucket (or --bucket-prefix) or grant access",
            ) from exc
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise to_cloud_error(exc, "HeadBucket", "s3") from exc  # type: ignore[misc]
    except Exception as exc:
        converted = to_cloud_error(exc, "HeadBucket", "s3")
        if converted is None:
            raise
        raise converted from exc
    else:
        _check_bucket_region(s3, bucket, region)
        log.info("bucket %s exists", bucket)
        return False
    if not create:
        raise CloudError("HeadBucket", "NoSuchBucket", f"bucket {bucket} does not exist",
                         "create it (or let this command create it) in the same region")
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != US_EAST_1:
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        code = error_code(exc)
        if code == "BucketAlreadyOwnedByYou":
            _check_bucket_region(s3, bucket, region)
            return False
        hints = {"BucketAlreadyExists": "bucket names are global and another account owns "
                                        "this one: choose another bucket or --bucket-prefix"}
        raise to_cloud_error(exc, "CreateBucket", "s3", hints) from exc  # type: ignore[misc]
    log.info("created bucket %s in %s", bucket, region)
    return True


def _check_bucket_region(s3: Any, bucket: str, region: str) -> None:
    actual = bucket_region(s3, bucket)
    if actual != region:
        raise CloudError(
            "checking the bucket's region", "BucketInOtherRegion",
            f"bucket {bucket} is in {actual}, not {region}",
            f"use --region {actual}, or another bucket (or --bucket-prefix) for {region}",
        )


def upload_file(s3: Any, path: Path, bucket: str, key: str) -> str:
    """Upload one file (multipart when large, as the AWS CLI does); its s3:// URI."""
    hints = {"NoSuchBucket": f"bucket {bucket} does not exist: create it first"}
    with aws_errors("PutObject", "s3", hints):
        s3.upload_file(str(path), bucket, key)
    uri = f"s3://{bucket}/{key}"
    log.info("uploaded %s to %s", path, uri)
    return uri


def download_file(s3: Any, bucket: str, key: str, dest: Path,
                  chunk_size: int = 1024 * 1024) -> Path:
    """Stream one object to ``dest`` (written to a temporary name, then renamed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    hints = {"NoSuchKey": f"s3://{bucket}/{key} does not exist"}
    with aws_errors("GetObject", "s3", hints):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            with partial.open("wb") as out:
                for chunk in iter(lambda: body.read(chunk_size), b""):
                    out.write(chunk)
        finally:
            body.close()
    partial.replace(dest)
    log.info("downloaded s3://%s/%s to %s", bucket, key, dest)
    return dest


# --- polling --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Poller:
    """Polling with an injectable clock and sleep, so tests never wait."""

    timeout: float
    interval: float
    clock: Clock = time.monotonic
    sleep: Sleep = time.sleep

    def until(self, what: str, poll: Callable[[], tuple[bool, str]]) -> str:
        """Call ``poll`` (-> (done, state)) until done; the final state, or WaitTimeout."""
        deadline = self.clock() + self.timeout
        while True:
            done, state = poll()
            if done:
                return state
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise WaitTimeout(what, self.timeout, state)
            log.info("%s: %s", what, state)
            self.sleep(min(self.interval, remaining))
