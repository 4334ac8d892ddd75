"""Process plumbing shared by the component entry points: logging and signals."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Callable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", *, to_stdout: bool = False) -> None:
    """Log lines with their level to stderr, or to stdout for a long-running component:
    Greengrass copies a component's stdout into its log as INFO lines and stderr as WARN, so
    components log to stdout and keep the real level in the message. Tools log to stderr so
    their stdout (tables, JSON lines) stays clean."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "ggic", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout if to_stdout else sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.ggic = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())


def install_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM (how Greengrass stops a component) and SIGINT call ``stop``."""

    def handler(signum: int, _frame: object) -> None:
        logging.getLogger("ggic").info("received %s", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
