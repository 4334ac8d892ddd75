"""What flows between the classifier's pipeline threads: the typed items of its queues.

    work queue:  Job | Stop            (IPC callback -> preprocessing workers)
    ready queue: Prepared | WarmUp | Stop   (workers, model loading -> the inference thread)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Union

from ..messages import ClassificationRequest
from .inputs import InputLimits
from .pipeline import ClassificationPipeline, PreparedInput


class WarmUp:
    """A warm-up for the inference thread to run; the loading thread waits for its outcome."""

    def __init__(self, pipeline: ClassificationPipeline) -> None:
        self.pipeline = pipeline
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.ms = 0.0

    def run(self) -> None:
        try:
            self.ms = self.pipeline.warm_up()
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


@dataclass(frozen=True)
class Job:
    """An accepted request, with the settings in force when it was accepted."""

    request: ClassificationRequest
    reply_topic: str
    top_k: int
    threshold: float
    limits: InputLimits
    accepted_at: float


@dataclass(frozen=True)
class Prepared:
    """A request read and preprocessed, for the inference thread."""

    job: Job
    pipeline: ClassificationPipeline
    prepared: PreparedInput


class Stop:
    """Tells a pipeline thread to end."""


STOP = Stop()
ReadyItem = Union[Prepared, WarmUp, Stop]
WorkItem = Union[Job, Stop]
