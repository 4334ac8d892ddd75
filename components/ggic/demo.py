"""``ggic demo``: both components, built as for a device, classify real photos under ``ggic local``.

One command on a fresh clone (after set-up), from the repository root:

1. prepares, idempotently, under ``.ggic/demo/``: the EfficientNet-Lite0 demo model (built once,
   reused while complete), the sample photos, the build output (``ggic build``) and a stand-in
   ``variant.DLR.ImageClassification.ModelStore`` (without a model: the demo sets ModelDir);
2. starts a local Greengrass runtime on a fresh root, deploys ``com.custom.ImageClassifier``
   with the demo model and waits until it reports RUNNING (model loaded and warmed up), then
   deploys ``com.custom.requester`` for one round over the photos;
3. collects the requests and results from the local topics, prints a table and the median
   inference time, and says where the logs are;
4. stops everything it started, also on Ctrl-C or failure. Exit 0 only if every photo got an
   ``ok`` result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

log = logging.getLogger(__name__)

DEFAULT_WORKDIR = Path(".ggic") / "demo"
CLASSIFIER = "com.custom.ImageClassifier"
REQUESTER = "com.custom.requester"
REQUEST_TOPIC = "local/inference"
RESULT_TOPIC = "local/result"
MODEL_PROFILE = "efficientnet-lite0"
TOP_K = 3
RESULT_TIMEOUT_S = 30
MODEL_MARKER = "model.complete.json"


class DemoError(RuntimeError):
    """The demo can't go on; the message says why and where to look."""


# --- preparation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoInputs:
    workdir: Path
    model_dir: Path
    model_built_seconds: float | None
    """None: an earlier run's model was reused."""
    images_dir: Path
    images: tuple[Path, ...]
    build_dir: Path
    versions: Mapping[str, str]
    stand_in: Path


def model_is_complete(model_dir: Path, marker: Path) -> bool:
    """Whether ``marker`` lists exactly the files of ``model_dir``, with their sizes."""
    try:
        expected = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(expected, dict) or not expected:
        return False
    try:
        actual = {p.name: p.stat().st_size for p in model_dir.iterdir() if p.is_file()}
    except OSError:
        return False
    return actual == expected


def prepare_model(workdir: Path) -> tuple[Path, float | None]:
    """The demo model at ``workdir/model``: reused if complete, else built (about a second)."""
    from .modelgen.efficientnet_lite import build_demo_model

    model_dir = workdir / "model"
    marker = workdir / MODEL_MARKER  # outside the model dir: DLR refuses a second *.json
    if model_is_complete(model_dir, marker):
        return model_dir, None
    partial = workdir / "model.partial"
    for stale in (partial, model_dir):
        if stale.exists():
            shutil.rmtree(stale)
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()
    model = build_demo_model(partial)
    partial.rename(model_dir)
    files = {p.name: p.stat().st_size for p in model_dir.iterdir() if p.is_file()}
    marker.write_text(json.dumps({"files": files, "checkpoint": str(model.checkpoint)}),
                      encoding="utf-8")
    return model_dir, model.build_seconds


def prepare(repo: Path, workdir: Path) -> DemoInputs:
    from .gdk_build import build_all
    from .local.stand_ins import write_modelstore_stand_in
    from .sample_images import copy_sample_photos

    workdir.mkdir(parents=True, exist_ok=True)
    model_dir, built = prepare_model(workdir)
    images_dir = workdir / "images"
    images = tuple(copy_sample_photos(images_dir))
    build_dir = workdir / "greengrass-build"
    built_components = build_all(repo, build_dir)
    versions = {component_name_of(recipe): artifacts.name for recipe, artifacts in built_components}
    stand_in = write_modelstore_stand_in(workdir / "stand-in").folder
    return DemoInputs(workdir, model_dir, built, images_dir, images, build_dir, versions,
                      stand_in)


def component_name_of(recipe: Path) -> str:
    """The component a built recipe belongs to (GDK names it after the source recipe)."""
    from .gdk_build import read_recipe

    document = read_recipe(recipe)
    for key, value in document.items():
        if key.lower() == "componentname":
            return str(value)
    raise DemoError(f"{recipe} has no ComponentName")


# --- what the components said ------------------------------------------------------------------


@dataclass
class Traffic:
    """Requests and results seen on the local topics (server-side subscriptions)."""

    requests: dict[str, str] = field(default_factory=dict)  # request_id -> image path
    results: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def on_request(self, _topic: str, message: Any) -> None:
        request = _as_json(message)
        if isinstance(request, Mapping) and request.get("request_id"):
            path = request.get("image_path") or request.get("fname") or "(inline image)"
            with self.changed:
                self.requests[str(request["request_id"])] = str(path)
                self.changed.notify_all()

    def on_result(self, _topic: str, message: Any) -> None:
        result = _as_json(message)
        if isinstance(result, Mapping) and result.get("request_id"):
            with self.changed:
                self.results[str(result["request_id"])] = result
                self.changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)


def _as_json(message: Any) -> Any:
    if isinstance(message, (bytes, bytearray)):
        try:
            return json.loads(message)
        except ValueError:
            return None
    return message


@dataclass(frozen=True)
class Row:
    image: str
    status: str
    predictions: tuple[tuple[str, float], ...] = ()
    inference_ms: float | None = None
    total_ms: float | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def table_rows(images: Sequence[Path], traffic: Traffic) -> list[Row]:
    by_image: dict[str, Row] = {}
    with traffic.lock:
        requests = dict(traffic.requests)
        results = dict(traffic.results)
    for request_id, path in requests.items():
        name = Path(path).name
        result = results.get(request_id)
        if result is None:
            by_image[name] = Row(name, "no result", problem="no result arrived")
        elif result.get("status") != "ok":
            error = result.get("error") or {}
            by_image[name] = Row(name, "error",
                                 problem=f"{error.get('code')}: {error.get('message')}")
        else:
            timing = result.get("timing_ms") or {}
            predictions = tuple((short_label(str(p.get("label"))), float(p.get("score", 0)))
                                for p in result.get("predictions") or ())
            by_image[name] = Row(name, "ok", predictions, timing.get("inference"),
                                 timing.get("total"))
    return [by_image.get(p.name) or Row(p.name, "not sent", problem="no request was sent")
            for p in images]


def short_label(label: str) -> str:
    """``'tabby, tabby cat'`` -> ``'tabby'`` (ImageNet names list synonyms)."""
    return label.split(",")[0].strip()


def format_table(rows: Sequence[Row]) -> list[str]:
    cells = [("image", "top-3 (probability)", "inference ms", "total ms")]
    for row in rows:
        if row.ok:
            top = ", ".join(f"{label} {score:.2f}" for label, score in row.predictions) \
                or "nothing above the threshold"
            cells.append((row.image, top, _ms(row.inference_ms), _ms(row.total_ms)))
        else:
            cells.append((row.image, f"{row.status.upper()}: {row.problem}", "-", "-"))
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for number, cell in enumerate(cells):
        lines.append(f"{cell[0]:<{widths[0]}} | {cell[1]:<{widths[1]}} | "
                     f"{cell[2]:>{widths[2]}} | {cell[3]:>{widths[3]}}")
        if number == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# --- the run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_runtime_logs(verbose: bool) -> Iterator[None]:
    """Keep the runtime's log in greengrass.log (not on the terminal) unless ``verbose``."""
    local, package = logging.getLogger("ggic.local"), logging.getLogger("ggic")
    saved = (local.propagate, package.level)
    if not verbose:
        local.propagate = False
        package.setLevel(logging.WARNING)
    try:
        yield
    finally:
        local.propagate = saved[0]
        package.setLevel(saved[1])


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)


def run_demo(repo: Path, workdir: Path, *, timeout: float = 120.0, verbose: bool = False,
             out: TextIO | None = None) -> int:
    """Run the demo (see the module docstring); the exit code. Prints to ``out`` (stdout)."""
    def say(text: str = "") -> None:
        print(text, file=out or sys.stdout, flush=True)

    repo, workdir = repo.resolve(), workdir.absolute()
    if not (repo / "gdk-config.json").is_file():
        raise DemoError(f"{repo} is not the repository root (no gdk-config.json): run "
                        "`ggic demo` there, or give --project-dir")
    with quiet_runtime_logs(verbose):
        started = time.monotonic()
        inputs = prepare(repo, workdir)
        model_note = ("reused" if inputs.model_built_seconds is None
                      else f"built in {inputs.model_built_seconds:.1f} s")
        say(f"ggic demo: {len(inputs.images)} photos through {CLASSIFIER} and {REQUESTER}, "
            "built as for a device, under a local Greengrass runtime")
        say(f"  model   {_relative(inputs.model_dir)} (EfficientNet-Lite0, {model_note})")
        say(f"  photos  {_relative(inputs.images_dir)} "
            f"({', '.join(p.name for p in inputs.images)})")
        say(f"  build   {_relative(inputs.build_dir)} "
            f"({', '.join(f'{n} {v}' for n, v in inputs.versions.items())})")
        return _run_components(inputs, timeout, started, say)


def _run_components(inputs: DemoInputs, timeout: float, started: float,
                    say: Callable[[str], None]) -> int:
    from .local.deployment import DeploymentRequest, parse_update_config
    from .local.lifecycle import RunnerSettings, State
    from .local.runtime import LocalRuntime, RuntimeSettings

    root = inputs.workdir / "root"
    if root.exists():
        shutil.rmtree(root)  # a fresh root each run
    settings = RuntimeSettings(stand_ins=(inputs.stand_in,), resume=False,
                               runner=RunnerSettings(grace_period=3.0),
                               deployment_timeout=timeout)
    runtime = LocalRuntime(root, settings)
    traffic = Traffic()
    from .demo_metrics import METRICS_TOPIC, MetricsCollector  # metrics (issue 12)
    metrics = MetricsCollector()  # metrics (issue 12)
    classifier_log, requester_log = runtime.log_path(CLASSIFIER), runtime.log_path(REQUESTER)
    say(f"  runtime {_relative(root)}")
    try:
        runtime.start()
        runtime.subscribe(REQUEST_TOPIC, traffic.on_request)
        runtime.subscribe(RESULT_TOPIC, traffic.on_result)
        runtime.subscribe(METRICS_TOPIC, metrics.on_message)  # metrics (issue 12)

        def deploy(name: str, configuration: Mapping[str, Any]) -> None:
            request = DeploymentRequest(
                recipe_dir=inputs.build_dir / "recipes",
                artifact_dir=inputs.build_dir / "artifacts",
                merge={name: inputs.versions[name]},
                update_config=parse_update_config({name: {"MERGE": dict(configuration)}}))
            record = runtime.deploy(request, timeout)
            if record.status != "SUCCEEDED":
                states = runtime.supervisor.states()
                broken = [c for c in record.components if states.get(c) == State.BROKEN]
                if broken:
                    raise DemoError(f"{broken[0]} is BROKEN: see "
                                    f"{_relative(runtime.log_path(broken[0]))}")
                raise DemoError(f"the deployment of {name} {record.status}: "
                                f"{record.error or 'timed out'}")
            say(f"deployed {name} {inputs.versions[name]}: {record.status}")

        deploy(CLASSIFIER, {
            "ModelDir": str(inputs.model_dir), "ModelProfile": MODEL_PROFILE,
            "AllowedImageDirs": [str(inputs.images_dir)], "TopK": str(TOP_K),
            "ScoreThreshold": "0", "MetricsInterval": "60"})
        if not runtime.wait_for_report(CLASSIFIER, "RUNNING", timeout):
            state = runtime.state(CLASSIFIER)
            if state == State.BROKEN:
                raise DemoError(f"{CLASSIFIER} is BROKEN: see {_relative(classifier_log)}")
            raise DemoError(f"{CLASSIFIER} did not report RUNNING within {timeout:g} s (it is "
                            f"{state.value}): see {_relative(classifier_log)}")
        say(f"{CLASSIFIER} loaded the model and reported RUNNING "
            f"({time.monotonic() - started:.1f} s)")
        deploy(REQUESTER, {
            "ImageDirectory": str(inputs.images_dir), "InferenceInterval": "0",
            "ResultTimeout": str(RESULT_TIMEOUT_S)})
        expected = len(inputs.images)
        finished = runtime.wait_for_state(REQUESTER, [State.FINISHED, State.BROKEN],
                                          RESULT_TIMEOUT_S + timeout)
        traffic.wait(lambda: len(traffic.requests) >= expected
                     and all(r in traffic.results for r in traffic.requests), 2.0)
        requester_state = runtime.state(REQUESTER)
        rows = table_rows(inputs.images, traffic)
        say(f"{REQUESTER} sent {len(traffic.requests)} requests and got "
            f"{sum(r in traffic.results for r in traffic.requests)} results; it is "
            f"{requester_state.value}")
        say("")
        for line in format_table(rows):
            say(line)
        say("")
        timings = [r.inference_ms for r in rows if r.ok and r.inference_ms is not None]
        if timings:
            say(f"median inference: {statistics.median(timings):.1f} ms over {len(timings)} "
                f"images (total run {time.monotonic() - started:.1f} s)")
        say(f"logs: {_relative(runtime.log_path())}, {_relative(classifier_log)}, "
            f"{_relative(requester_log)}")
        if requester_state == State.BROKEN:
            raise DemoError(f"{REQUESTER} is BROKEN: see {_relative(requester_log)}")
        if not finished:
            raise DemoError(f"{REQUESTER} did not finish its round within "
                            f"{RESULT_TIMEOUT_S + timeout:g} s: see {_relative(requester_log)}")
        failed = [r for r in rows if not r.ok]
        if failed:
            raise DemoError(f"{len(failed)} of {len(rows)} images got no ok result "
                            f"({', '.join(r.image for r in failed)}): see "
                            f"{_relative(classifier_log)}")
        return 0
    finally:
        runtime.close()
        say("stopped the local runtime and its components")
        # metrics (issue 12): the classifier publishes its last interval when it stops
        say(f"{CLASSIFIER} metrics on {METRICS_TOPIC} (aws.greengrass.Cloudwatch's format):")
        for line in metrics.summary(CLASSIFIER):
            say(f"  {line}")


# --- command line ------------------------------------------------------------------------------


def add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="classify the sample photos with both components under a local runtime",
        description=(
            "The one-command demo, from the repository root: build the EfficientNet-Lite0 "
            "demo model (once), copy the sample photos, build both components as for a "
            "device (`ggic build`), then run them unchanged under a local Greengrass runtime "
            "(`ggic local`): deploy the classifier, wait until it has loaded the model, "
            "deploy the requester for one round over the photos, and print each photo's "
            "top-3 labels and timings. Exit 0 only if every photo got an ok result."),
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"where to prepare and run (default: {DEFAULT_WORKDIR}; the "
                             "runtime's root is WORKDIR/root, fresh each run)")
    parser.add_argument("--project-dir", type=Path, default=Path("."),
                        help="the repository root (default: the current directory)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for each step (default: 120)")
    parser.add_argument("--verbose", action="store_true",
                        help="also print the runtime's log (it is always in "
                             "WORKDIR/root/logs/greengrass.log)")
    parser.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    from .gdk_build import BuildError
    from .local.stand_ins import StandInError
    from .modelgen.efficientnet_lite import DemoModelError
    from .sample_images import SamplePhotosMissing

    def terminate(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: the runtime and its components stop
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        return run_demo(args.project_dir, args.workdir, timeout=args.timeout,
                        verbose=args.verbose)
    except (DemoError, DemoModelError, SamplePhotosMissing, BuildError, StandInError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        print(f"interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    finally:
        signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the demo is so that its cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
