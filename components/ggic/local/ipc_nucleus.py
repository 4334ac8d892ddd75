"""What the IPC operations act on: registered components, pub/sub, configuration, records.

Thread-safe; independent of sockets and the event loop (the server adds those). User callbacks
(``on_state_change``, ``on_iot_core_publish``, server-side subscriptions) run one at a time,
in order, on a dedicated callback thread, so a slow callback never stalls IPC traffic.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from .authorization import AccessControl
from .component_updates import ComponentUpdates
from .config_store import ConfigStore
from .config_validation import ConfigurationValidation
from .control_api import ControlHandler
from .iotcore_broker import PASSED_THROUGH, IotCoreBroker, IotCoreMessage
from .pubsub_broker import PubSubBroker

log = logging.getLogger("ggic.local.ipc")

MAX_KEPT_METRICS = 1000

StateCallback = Callable[[str, str], None]
"""``on_state_change(component, state)``"""
IotCorePublishCallback = Callable[[dict], None]
"""``on_iot_core_publish(record)`` with keys topic, payload (bytes), qos, retain, component."""


class CallbackRunner:
    """Runs user callbacks in order on one worker thread; exceptions are logged."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ggic-ipc-callbacks")
        self._closed = False

    def submit(self, callback: Callable[..., Any], *args: Any) -> None:
        if self._closed:
            return

        def run() -> None:
            try:
                callback(*args)
            except Exception:
                log.exception("callback %r failed", callback)

        with contextlib.suppress(RuntimeError):  # shut down concurrently
            self._executor.submit(run)

    def close(self, wait: bool = True) -> None:
        self._closed = True
        self._executor.shutdown(wait=wait)


@dataclass
class ComponentRecord:
    name: str
    token: str
    access_control: AccessControl
    cli: bool = False
    state: str | None = None


class LocalNucleus:
    def __init__(
        self,
        *,
        control_handler: ControlHandler | None = None,
        on_iot_core_publish: IotCorePublishCallback | None = None,
        on_state_change: StateCallback | None = None,
        config: ConfigStore | None = None,
    ) -> None:
        self.control_handler = control_handler
        self.broker = PubSubBroker()
        self.iot_core = IotCoreBroker()
        self.component_updates = ComponentUpdates()
        self.validation = ConfigurationValidation()
        self.pauser: Any = None
        """A ``component_pause.ComponentPauser`` (set by the runtime), or None."""
        """The stand-in for AWS IoT Core's broker (SubscribeToIoTCore, PublishToIoTCore)."""
        self.config = config if config is not None else ConfigStore()
        """The one configuration store (the runtime's, shared with its deployments)."""
        self.callbacks = CallbackRunner()
        self.iot_core_messages: list[dict[str, Any]] = []
        self.component_metrics: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT_METRICS)
        """The last PutComponentMetric metrics accepted (``ipc_metrics``)."""
        self.metric_sink: Callable[[dict[str, Any]], None] | None = None
        """Called (on the callback thread) with each accepted metric."""
        self._on_iot_core_publish = on_iot_core_publish
        self._on_state_change = on_state_change
        self._lock = threading.Lock()
        self._state_changed = threading.Condition(self._lock)
        self._components: dict[str, ComponentRecord] = {}
        self._tokens: dict[str, str] = {}

    # --- components ------------------------------------------------------------------------

    def register(
        self,
        name: str,
        *,
        access_control: Mapping | str | None = None,
        configuration: Mapping | None = None,
        cli: bool = False,
    ) -> str:
        """Register (or re-register) a component; returns a fresh token, revoking the old one.

        On re-registration, ``access_control``/``configuration`` given as None keep their
        current values.
        """
        if not name:
            raise ValueError("component name must not be empty")
        token = secrets.token_urlsafe(24)
        with self._lock:
            record = self._components.get(name)
            if record is None:
                record = ComponentRecord(
                    name, token, AccessControl.parse(name, access_control), cli
                )
                self._components[name] = record
            else:
                self._tokens.pop(record.token, None)
                record.token = token
                record.cli = cli
                if access_control is not None:
                    record.access_control = AccessControl.parse(name, access_control)
            self._tokens[token] = name
        if configuration is not None or not self.config.has(name):
            self.config.create(name, configuration)
        log.info("registered component %s%s", name, " (cli)" if cli else "")
        return token

    def unregister(self, name: str) -> None:
        with self._lock:
            record = self._components.pop(name, None)
            if record is not None:
                self._tokens.pop(record.token, None)
            self._state_changed.notify_all()
        self.config.remove(name)
        if record is not None:
            log.info("unregistered component %s", name)

    def authenticate(self, token: object) -> str | None:
        """The component a token belongs to, or None."""
        if not isinstance(token, str):
            return None
        with self._lock:
            return self._tokens.get(token)

    def token(self, name: str) -> str:
        return self._record(name).token

    def is_registered(self, name: str) -> bool:
        with self._lock:
            return name in self._components

    def component_names(self) -> list[str]:
        with self._lock:
            return list(self._components)

    def access_control(self, name: str) -> AccessControl:
        with self._lock:
            record = self._components.get(name)
            return record.access_control if record is not None else AccessControl(name)

    def set_access_control(self, name: str, access_control: Mapping | str | None) -> None:
        parsed = AccessControl.parse(name, access_control)
        with self._lock:
            self._record_locked(name).access_control = parsed

    def is_cli(self, name: str) -> bool:
        with self._lock:
            record = self._components.get(name)
            return record is not None and record.cli

    def _record(self, name: str) -> ComponentRecord:
        with self._lock:
            return self._record_locked(name)

    def _record_locked(self, name: str) -> ComponentRecord:
        record = self._components.get(name)
        if record is None:
            raise KeyError(f"no component named {name!r} is registered")
        return record

    # --- lifecycle state -------------------------------------------------------------------

    def record_state(self, name: str, state: str) -> None:
        with self._lock:
            record = self._components.get(name)
            if record is None:
                return
            record.state = state
            self._state_changed.notify_all()
        log.info("%s reported state %s", name, state)
        if self._on_state_change is not None:
            self.callbacks.submit(self._on_state_change, name, state)

    def component_state(self, name: str) -> str | None:
        with self._lock:
            record = self._components.get(name)
            return record.state if record is not None else None

    def wait_for_state(self, name: str, state: str, timeout: float) -> bool:
        with self._lock:
            return self._state_changed.wait_for(
                lambda: (
                    (self._components.get(name) is not None)
                    and self._components[name].state == state
                ),
                timeout,
            )

    # --- MQTT proxy ------------------------------------------------------------------------

    def record_iot_core_publish(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.iot_core_messages.append(record)
        log.info(
            "%s published %d bytes to AWS IoT Core topic %s (recorded, not sent: no cloud)",
            record.get("component"),
            len(record.get("payload", b"")),
            record.get("topic"),
        )
        if self._on_iot_core_publish is not None:
            self.callbacks.submit(self._on_iot_core_publish, dict(record))
        self.iot_core.publish(IotCoreMessage(
            record["topic"], record.get("payload", b""), record.get("component", ""),
            qos=record.get("qos", 0), retain=record.get("retain", False),
            properties={k: record[k] for k in PASSED_THROUGH if k in record}))

    def record_metric(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.component_metrics.append(record)
        if self.metric_sink is not None:
            self.callbacks.submit(self.metric_sink, dict(record))

    def close(self) -> None:
        self.callbacks.close()
