"""Offline AWS clients for tests: botocore ``Stubber``s on clients that cannot send anything.

Every client has fake, explicit credentials and a ``before-send`` hook that raises, so a call
without a queued response fails loudly instead of reaching an endpoint.
"""

from __future__ import annotations

from typing import Any

from .aws import AwsClients, Poller

FAKE_ACCOUNT = "123456789012"
_SESSION: Any = None


class NetworkRefused(AssertionError):
    """A stubbed client tried to send a request."""


def _refuse(request: Any, **_kwargs: Any) -> None:
    raise NetworkRefused(f"a request would have been sent to {request.url}")


def _session() -> Any:
    # One session for the process: its loader caches the service models.
    global _SESSION
    if _SESSION is None:
        import boto3

        _SESSION = boto3.session.Session(aws_access_key_id="testing",
                                         aws_secret_access_key="testing")
    return _SESSION


def refuse_network(client: Any) -> Any:
    client.meta.events.register("before-send", _refuse)
    return client


class StubbedAws:
    """One stubbed client per service, created on first use (``stubs["s3"]`` is its Stubber).

    ``capture(service, operation)`` records the parameters of each call, for bodies a Stubber
    cannot compare (file handles, blobs); :meth:`verify` checks every queued response was used.
    """

    def __init__(self, region: str) -> None:
        from botocore.stub import Stubber

        self._stubber_class = Stubber
        self.region = region
        self.clients: dict[str, Any] = {}
        self.stubbers: dict[str, Any] = {}
        self.sent: dict[str, list[dict[str, Any]]] = {}

    def __getitem__(self, service: str) -> Any:
        if service not in self.stubbers:
            client = refuse_network(_session().client(service, region_name=self.region))
            stubber = self._stubber_class(client)
            stubber.activate()
            self.clients[service] = client
            self.stubbers[service] = stubber
        return self.stubbers[service]

    def capture(self, service: str, operation: str) -> list[dict[str, Any]]:
        self[service]
        client = self.clients[service]
        seen = self.sent.setdefault(operation, [])
        event = f"before-parameter-build.{client.meta.service_model.service_id.hyphenize()}"
        client.meta.events.register(f"{event}.{operation}",
                                    lambda params, **_: seen.append(dict(params)))
        return seen

    def aws(self, account: str | None = None,
            services: tuple[str, ...] = ("s3", "sts", "greengrassv2", "sagemaker")) -> AwsClients:
        """AwsClients over these stubbed clients (``account`` given: no STS call)."""
        for service in services:
            self[service]
        return AwsClients.from_clients(self.region, self.clients, account)

    def verify(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


def offline_environment(monkeypatch: Any, folder: Any) -> None:
    """Fake credentials, a region and no config files, through pytest's ``monkeypatch``: no
    client made during a test can use a real profile or the instance metadata service."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CREDENTIAL_PROCESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class ManualClock:
    """A clock that only moves when slept on: a :class:`Poller` under it never waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def manual_poller(timeout: float, interval: float) -> tuple[Poller, ManualClock]:
    """A Poller on a :class:`ManualClock`, and the clock (its ``sleeps`` say how it waited)."""
    clock = ManualClock()
    return Poller(timeout=timeout, interval=interval, clock=clock, sleep=clock.sleep), clock
