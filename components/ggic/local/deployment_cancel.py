"""Cancelling local deployments (CancelLocalDeployment): which were asked to stop, and an event
per deployment that ends its wait for components to allow the update (as the nucleus's
UpdateSystemPolicyService.discardPendingUpdateAction does; an update being applied finishes)."""

from __future__ import annotations

import threading


class Cancellations:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested: set[str] = set()
        self._waiters: dict[str, threading.Event] = {}
        self._closed = False

    def request(self, deployment_id: str) -> None:
        with self._lock:
            self._requested.add(deployment_id)
            event = self._waiters.get(deployment_id)
        if event is not None:
            event.set()

    def waiter(self, deployment_id: str) -> threading.Event:
        """Set when the deployment is cancelled or the runtime closes."""
        with self._lock:
            event = self._waiters.setdefault(deployment_id, threading.Event())
            if self._closed or deployment_id in self._requested:
                event.set()
            return event

    def close(self) -> None:
        with self._lock:
            self._closed = True
            events = list(self._waiters.values())
        for event in events:
            event.set()
