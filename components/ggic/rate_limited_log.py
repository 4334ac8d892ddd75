"""A warning that an overload cannot turn into a flood of log lines."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class RateLimitedCounter:
    """Counts an event and logs at most one line per ``interval`` seconds, so an overload does
    not also flood the log: the first event is logged at once; later ones are counted, and the
    count (with the latest event's detail) is logged when the interval since the last line has
    passed, by the next event or by a timer, so no count is left unlogged for long.

    ``message`` is a %-format taking (count, seconds, detail)."""

    def __init__(self, message: str, interval: float = 5.0,
                 logger: logging.Logger | None = None) -> None:
        self.message = message
        self.interval = interval
        self.logger = logger or log
        self._lock = threading.Lock()
        self._count = 0
        self._detail = ""
        self._window_start = 0.0
        self._last_line: float | None = None
        self._timer: threading.Timer | None = None

    def note(self, detail: str = "") -> None:
        with self._lock:
            now = time.monotonic()
            if self._count == 0:
                self._window_start = now
            self._count += 1
            self._detail = detail
            if self._last_line is None or now - self._last_line >= self.interval:
                self._log_locked(now)
            elif self._timer is None:
                self._timer = threading.Timer(self._last_line + self.interval - now, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Log what was counted since the last line, if anything (the timer calls this; so
        may a service that stops)."""
        with self._lock:
            timer, self._timer = self._timer, None
            if timer is not None and timer is not threading.current_thread():
                timer.cancel()  # a stopping service's flush: no thread left to log later
            if self._count:
                self._log_locked(time.monotonic())

    def _log_locked(self, now: float) -> None:
        self.logger.warning(self.message, self._count, now - self._window_start, self._detail)
        self._count = 0
        self._last_line = now
