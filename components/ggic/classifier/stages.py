"""What flows between the classifier's pipeline threads: the typed items of its queues
(:mod:`.dispatch` holds the queues).

    work queue:  Job | Stop            (IPC callback -> preprocessing workers)
    ready queue: Prepared | WarmUp | Stop   (workers, model loading -> the inference thread),
                 or a Job when the pipeline is idle (the inference thread prepares it)
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Union

from ..messages import ClassificationRequest
from .inference_threads import RUNTIME_DEFAULT, apply_inference_threads
from .inputs import InputLimits
from .pipeline import ClassificationPipeline, PreparedInput

log = logging.getLogger(__name__.rsplit(".", 1)[0] + ".service")


class WarmUp:
    """A warm-up for the inference thread to run; the loading thread waits for its outcome.
    It also sizes the model's thread pools (InferenceThreads) on that thread, first."""

    def __init__(self, pipeline: ClassificationPipeline,
                 inference_threads: int = RUNTIME_DEFAULT) -> None:
        self.pipeline = pipeline
        self.inference_threads = inference_threads
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.ms = 0.0

    def run(self) -> None:
        try:
            model = getattr(self.pipeline, "model", None)
            applied = apply_inference_threads(self.inference_threads,
                                              getattr(model, "backend", None))
            log.info("%s", applied.describe())
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
ReadyItem = Union[Prepared, WarmUp, Stop, Job]
"""What the inference thread takes: a prepared input, a warm-up, a stop, or a job to prepare
itself (the pipeline was idle)."""
WorkItem = Union[Job, Stop]
