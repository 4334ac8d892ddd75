"""Process plumbing shared by the component entry points: logging and signals."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Callable

from .log_text import LOG_MESSAGE_LIMIT, escape, escape_lines

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Characters of a traceback kept in one log record.
LOG_TRACEBACK_LIMIT = 20000


class SafeFormatter(logging.Formatter):
    """Every record is one line of printable text, at most LOG_MESSAGE_LIMIT characters of
    message (escaped as :func:`ggic.log_text.escape` does), plus, for an exception, its
    traceback with each line escaped and indented: whatever client text a message carries, it
    cannot forge a record, rewrite a terminal, or (a lone surrogate) make the stream refuse the
    line."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape(record.getMessage(), LOG_MESSAGE_LIMIT)
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + escape_lines(record.exc_text, LOG_TRACEBACK_LIMIT)
        if record.stack_info:
            line += "\n" + escape_lines(self.formatStack(record.stack_info), LOG_TRACEBACK_LIMIT)
        return line


def configure_logging(level: str = "INFO", *, to_stdout: bool = False) -> None:
    """Log lines with their level to stderr, or to stdout for a long-running component:
    Greengrass copies a component's stdout into its log as INFO lines and stderr as WARN, so
    components log to stdout and keep the real level in the message. Tools log to stderr so
    their stdout (tables, JSON lines) stays clean."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "ggic", False):
            root.removeHandler(handler)
    stream = sys.stdout if to_stdout else sys.stderr
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:  # a stream that cannot encode a character escapes it
        reconfigure(errors="backslashreplace")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter(LOG_FORMAT))
    handler.ggic = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM (how Greengrass stops a component) and SIGINT call ``stop``, on a thread of
    their own (call this from the main thread).

    Not from a Python signal handler: that runs on the main thread between two bytecodes,
    maybe while the main thread holds a lock that ``stop`` takes too - an Event's or a Queue's,
    which are not re-entrant - and then the process deadlocks and never stops (seen: the stream
    requester's pacing waits on the Event ``stop`` sets). Instead the C-level handler writes the
    signal's number into a pipe (``signal.set_wakeup_fd``; the Python-level handler does
    nothing), and a watcher thread reading the pipe calls ``stop``."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _wake_only)
    watcher = threading.Thread(target=_watch_signals, args=(read_fd, stop),
                               name="ggic-signals", daemon=True)
    watcher.start()


def _wake_only(_signum: int, _frame: object) -> None:
    """The Python-level handler: nothing (the wakeup fd already woke the watcher)."""


def _watch_signals(read_fd: int, stop: Callable[[], None]) -> None:
    log = logging.getLogger("ggic")
    while True:
        try:
            received = os.read(read_fd, 64)
        except InterruptedError:
            continue
        except OSError:
            return
        if not received:
            return
        for signum in received:
            if signum in STOP_SIGNALS:
                log.info("received %s", signal.Signals(signum).name)
                try:
                    stop()
                except Exception:  # a bug in stop must not end the watching
                    log.exception("stopping failed")
