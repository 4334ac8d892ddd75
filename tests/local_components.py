"""Small real components for the ggic local runtime tests (a helper module: no tests here).

The probe component is a Python process that uses the REAL awsiotsdk client
(``GreengrassCoreIPCClientV2``) the way our components do, driven by its configuration, and
notes what it saw as JSON lines in ``{work:path}/events.jsonl``.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ggic.cli import main
from ggic.gdk_build import build_all
from ggic.local.lifecycle import RunnerSettings
from ggic.local.runtime import LocalRuntime, RuntimeSettings
from ggic.local.stand_ins import write_modelstore_stand_in
from ggic.modelgen.testnets import write_modelstore_like

REPO = Path(__file__).resolve().parents[1]

PROBE = "com.example.Probe"
CRASHER = "com.example.Crasher"
TICKER = "com.example.Ticker"
FAST_RUNNER = RunnerSettings(grace_period=1.0, output_drain_timeout=1.0)

#: The start of a probe-like script (after its imports: json, os, signal, threading and
#: GreengrassCoreIPCClientV2): ``note(**fields)`` appends a JSON line to $PROBE_EVENTS, ``stop``
#: is set by SIGTERM, ``client`` is the real IPC client.
PROBE_PRELUDE = r'''
events = os.environ["PROBE_EVENTS"]
lock = threading.Lock()

def note(**fields):
    with lock, open(events, "a") as out:
        out.write(json.dumps(dict(fields, pid=os.getpid())) + "\n")

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
client = GreengrassCoreIPCClientV2()
'''

PROBE_SCRIPT = r'''
import datetime, json, os, signal, sys, threading
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
''' + PROBE_PRELUDE + r'''config = client.get_configuration(key_path=[]).value
note(event="start", config=config)
if config.get("ReportErrored") == "true":
    client.update_state(state="ERRORED")
    note(event="reported-errored")
    stop.wait(30)
    sys.exit(0)
client.subscribe_to_configuration_update(
    key_path=[], on_stream_event=lambda e: note(
        event="config", key_path=list(e.configuration_update_event.key_path)))
if config.get("SetCounter"):
    client.update_configuration(key_path=[], timestamp=datetime.datetime.now(),
                                value_to_merge={"Counter": config["SetCounter"]})
    note(event="updated-counter")
if config.get("IotCoreTopic"):
    client.publish_to_iot_core(topic_name=config["IotCoreTopic"], qos="1",
                               payload=json.dumps({"hello": "cloud"}).encode())
    note(event="published-iot-core")
client.update_state(state="RUNNING")
note(event="ready")
stop.wait(60)
note(event="stopping")
client.close()
'''


def write_recipe(folder: Path, name: str, version: str, run: str, *,
                 defaults: Mapping[str, Any] | None = None,
                 dependencies: Mapping[str, str] | None = None,
                 setenv: Mapping[str, str] | None = None) -> Path:
    lifecycle: dict[str, Any] = {"Run": run}
    if setenv:
        lifecycle["Setenv"] = dict(setenv)
    recipe: dict[str, Any] = {
        "RecipeFormatVersion": "2020-01-25", "ComponentName": name,
        "ComponentVersion": version,
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": lifecycle}],
    }
    if defaults is not None:
        recipe["ComponentConfiguration"] = {"DefaultConfiguration": dict(defaults)}
    if dependencies:
        recipe["ComponentDependencies"] = {
            dep: {"VersionRequirement": requirement, "DependencyType": "HARD"}
            for dep, requirement in dependencies.items()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def probe_access_control(iot_core_topic: str | None = None) -> dict[str, Any]:
    access: dict[str, Any] = {}
    if iot_core_topic:
        access["aws.greengrass.ipc.mqttproxy"] = {
            f"{PROBE}:mqttproxy:1": {
                "operations": ["aws.greengrass#PublishToIoTCore"],
                "resources": [iot_core_topic]}}
    return access


def write_probe(recipes: Path, scripts: Path, version: str = "1.0.0",
                defaults: Mapping[str, Any] | None = None) -> Path:
    scripts.mkdir(parents=True, exist_ok=True)
    script = scripts / "probe.py"
    script.write_text(PROBE_SCRIPT, encoding="utf-8")
    return write_recipe(recipes, PROBE, version, f"exec '{sys.executable}' '{script}'",
                        defaults=defaults, setenv={"PROBE_EVENTS": "{work:path}/events.jsonl"})


def write_crasher(recipes: Path, version: str = "1.0.0") -> Path:
    return write_recipe(recipes, CRASHER, version, "echo 'crashing on purpose' >&2; exit 3")


def write_ticker(recipes: Path, version: str = "1.0.0",
                 dependencies: Mapping[str, str] | None = None) -> Path:
    return write_recipe(recipes, TICKER, version,
                        "trap 'echo bye; exit 0' TERM; while true; do echo tick; sleep 0.1; done",
                        dependencies=dependencies)


def probe_events(runtime: LocalRuntime) -> list[dict[str, Any]]:
    path = runtime.root / "work" / PROBE / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def fast_runtime(root: Path, **settings: Any) -> LocalRuntime:
    settings.setdefault("runner", FAST_RUNNER)
    settings.setdefault("deployment_timeout", 30.0)
    settings.setdefault("stable_seconds", 0.3)
    return LocalRuntime(root, RuntimeSettings(**settings))


def run_ggic(args: list[str]) -> int:
    """``ggic ARGS`` in this process; then drop the log handler main() pointed at the (captured)
    stderr, which pytest closes while runtimes still log."""
    try:
        return main(args)
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "ggic", False)]:
            root.removeHandler(handler)


@dataclass(frozen=True)
class OurRecipes:
    """What deploying our own recipes on ``ggic local`` needs."""

    build: Path  # ``ggic build``'s output: recipes/ and artifacts/
    model_dir: Path  # a ResNet50-like DLR model directory
    stand_in: Path  # the stand-in ModelStore component (serving model_dir) for ``stand_ins=``
    images: Path  # a folder of copies of the photos


def build_our_recipes(base: Path, photos: Sequence[Path], *, seed: int) -> OurRecipes:
    """Our recipes built (``ggic build``) into ``base``, with a model stand-in and the photos."""
    build = base / "greengrass-build"
    build_all(REPO, build)
    net = write_modelstore_like(base / "resnet50-like", seed=seed)
    stand_in = write_modelstore_stand_in(base / "stand-in", net.model_dir)
    images = base / "images"
    images.mkdir()
    for photo in photos:
        shutil.copy(photo, images / photo.name)
    return OurRecipes(build, net.model_dir, stand_in.folder, images)
