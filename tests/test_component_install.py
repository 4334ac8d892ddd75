"""The recipes' Install script: model copy and environment set-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "component-install.sh"


def run_install(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPT), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_copies_the_modelstore_model_and_reuses_a_given_venv(tmp_path):
    source = tmp_path / "modelstore" / "DLR-resnet50-x86_64-cpu-ImageClassification"
    source.mkdir(parents=True)
    (source / "compiled.so").write_bytes(b"lib")
    (source / "synset.txt").write_text("{0: 'a'}")
    work = tmp_path / "work"
    work.mkdir()
    venv = Path(sys.prefix)
    done = run_install(str(REPO), str(work), str(source), env={"GGIC_REUSE_VENV": str(venv)})
    assert done.returncode == 0, done.stderr
    assert (work / "model" / "compiled.so").read_bytes() == b"lib"
    assert (work / "venv").resolve() == venv.resolve()
    # a second run replaces the copy (a new ModelStore version) and stays idempotent
    (source / "compiled.so").write_bytes(b"lib2")
    done = run_install(str(REPO), str(work), str(source), env={"GGIC_REUSE_VENV": str(venv)})
    assert done.returncode == 0, done.stderr
    assert (work / "model" / "compiled.so").read_bytes() == b"lib2"


def test_missing_modelstore_model_is_reported_not_fatal(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    done = run_install(str(REPO), str(work), str(tmp_path / "absent"),
                       env={"GGIC_REUSE_VENV": sys.prefix})
    assert done.returncode == 0
    assert "set ModelDir" in done.stderr
    assert not (work / "model").exists()


def test_refuses_a_python_older_than_39(tmp_path):
    fake = tmp_path / "python-old"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    done = run_install(str(REPO), str(work), env={"GGIC_PYTHON": str(fake),
                                                   "GGIC_REUSE_VENV": ""})
    assert done.returncode == 1
    assert "needs Python 3.9" in done.stderr
