"""Component update notifications and deferrals (SubscribeToComponentUpdates,
DeferComponentUpdate), following the nucleus's LifecycleIPCEventStreamAgent and
UpdateSystemPolicyService.

Before a deployment disrupts components, every subscriber (whether or not its own component
changes) gets ``{"preUpdateEvent": {"deploymentId", "isGgcRestarting": false}}``. The runtime
then waits until each has answered or ``timeout`` has passed (a silent subscriber costs the whole
timeout, as on a device). If some answered DeferComponentUpdate with ``recheckAfterMs`` > 0, it
sleeps the largest and asks everyone again; otherwise it applies the update and sends
``{"postUpdateEvent": {"deploymentId"}}``. Like the nucleus, deferrals are not capped in total:
a component can keep deferring.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
from typing import Any, Callable

from .ipc_errors import InvalidArgumentsError, ServiceError

log = logging.getLogger("ggic.local.runtime")

Sender = Callable[[dict], None]
#: UpdateSystemPolicyService's default componentUpdatePolicy timeout (cloud deployments).
DEFAULT_UPDATE_TIMEOUT_S = 60.0


class ComponentUpdates:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[Sender]] = {}
        self._deferrals: dict[tuple[str, str], Future] = {}

    def subscribe(self, name: str, send: Sender) -> Callable[[], None]:
        with self._lock:
            self._subscribers.setdefault(name, []).append(send)

        def unsubscribe() -> None:
            with self._lock:
                senders = self._subscribers.get(name, [])
                if send in senders:
                    senders.remove(send)
                if not senders:
                    self._subscribers.pop(name, None)

        return unsubscribe

    def defer(self, name: str, deployment_id: Any, recheck_after_ms: Any, message: Any) -> None:
        """A component's DeferComponentUpdate (the nucleus's checks and words)."""
        with self._lock:
            if name not in self._subscribers:
                raise InvalidArgumentsError(
                    "Component is not subscribed to component update events")
            if deployment_id is None:
                raise InvalidArgumentsError(
                    "Cannot defer the update, the deployment ID provided was null")
            future = self._deferrals.pop((name, str(deployment_id)), None)
        if future is None:
            raise ServiceError("Time limit to respond to PreComponentUpdateEvent exceeded")
        log.info("%s defers deployment %s by %s ms: %s", name, deployment_id, recheck_after_ms,
                 message)
        future.set_result(recheck_after_ms)

    def _send_pre_update(self, deployment_id: str) -> list[Future]:
        event = {"preUpdateEvent": {"deploymentId": deployment_id, "isGgcRestarting": False}}
        futures = []
        with self._lock:
            self._deferrals.clear()
            targets = [(n, s) for n, senders in self._subscribers.items() for s in senders]
            for name, _send in targets:
                future: Future = Future()
                self._deferrals[(name, deployment_id)] = future  # the latest per component
                futures.append(future)
        for name, send in targets:
            try:
                send(event)
            except Exception:
                log.exception("sending the pre-update event to %s failed", name)
        return futures

    def wait_until_disruptable(self, deployment_id: str, timeout: float,
                               closing: threading.Event) -> None:
        """Notify, honour deferrals, and return when the update may go ahead (or on closing)."""
        while not closing.is_set():
            futures = self._send_pre_update(deployment_id)
            if not futures:
                return
            done, _pending = wait_for_futures(futures, timeout)
            recheck_ms = 0
            for future in done:
                value = future.result()
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    recheck_ms = max(recheck_ms, int(value))
                else:
                    log.warning("a deferral without recheckAfterMs is ignored")
            with self._lock:
                self._deferrals.clear()
            if recheck_ms <= 0:
                return
            log.info("deployment %s deferred: asking again in %d ms", deployment_id, recheck_ms)
            closing.wait(recheck_ms / 1000.0)
            time.sleep(0)

    def send_post_update(self, deployment_id: str) -> None:
        event = {"postUpdateEvent": {"deploymentId": deployment_id}}
        with self._lock:
            targets = [(n, s) for n, senders in self._subscribers.items() for s in senders]
        for name, send in targets:
            try:
                send(event)
            except Exception:
                log.exception("sending the post-update event to %s failed", name)
