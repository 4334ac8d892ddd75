"""Process plumbing shared by the component entry points: logging and signals."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Callable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Log to stdout: Greengrass copies a component's stdout into its log as INFO lines
    (and stderr as WARN), so the level stays visible in the message itself."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stdout, force=True)


def install_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM (how Greengrass stops a component) and SIGINT call ``stop``."""

    def handler(signum: int, _frame: object) -> None:
        logging.getLogger("ggic").info("received %s", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
