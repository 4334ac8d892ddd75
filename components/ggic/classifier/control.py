"""What the classifier's main thread is asked to do, and when to reopen an ended subscription."""

from __future__ import annotations

import enum


class Control(enum.Enum):
    """Events for the main thread (put on its control queue from any thread)."""

    CONFIG = "configuration changed"
    STOP = "stop"
    CONNECTION_LOST = "connection lost"
    RESUBSCRIBE_REQUESTS = "request subscription ended"
    RESUBSCRIBE_CONFIG = "configuration subscription ended"


class Reopening:
    """When to try reopening each ended subscription: at once, then after pauses that double
    from ``first`` up to ``most`` seconds while the attempts fail."""

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self._due: dict[Control, float] = {}
        self._pause: dict[Control, float] = {}

    def ended(self, which: Control, now: float) -> bool:
        """Schedule a reopening now; False if one is already scheduled."""
        if which in self._due:
            return False
        self._due[which] = now
        return True

    def due(self, now: float) -> list[Control]:
        return [which for which, at in self._due.items() if at <= now]

    def failed(self, which: Control, now: float) -> float:
        """The attempt failed: schedule the next one; the pause."""
        pause = min(self.most, self._pause.get(which, self.first / 2) * 2)
        self._pause[which] = pause
        self._due[which] = now + pause
        return pause

    def succeeded(self, which: Control) -> None:
        self._due.pop(which, None)
        self._pause.pop(which, None)

    def wait_time(self, now: float, idle: float) -> float:
        """How long the main thread may wait for events before the next attempt is due."""
        if not self._due:
            return idle
        return max(0.0, min(self._due.values()) - now)
