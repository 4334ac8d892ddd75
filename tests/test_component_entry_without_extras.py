"""The components' Run command (``python -m ggic classifier`` / ``requester``) starts with only
what their Install step puts in the venv on a device: no optional extra (PyYAML, boto3, ONNX).
The arm manifests' venv has awsiotsdk plus the OS's numpy/OpenCV and variant.DLR's dlr; the
x86_64 one pip-installs the project without extras. ``ggic``'s argument parser is built for every
command, so a top-level import of an extra anywhere in it stops the component before it starts
(found by the armv7l run under emulation: ``ModuleNotFoundError: No module named 'yaml'``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

EXTRAS = ("yaml", "boto3", "botocore", "onnxruntime", "onnx")

# import of any extra fails as where it is not installed
BLOCK_EXTRAS = (
    "import sys\n"
    f"for name in {EXTRAS!r}:\n"
    "    sys.modules[name] = None\n"
)
# then the real entry point runs, as the Run command starts it
WITHOUT_EXTRAS = BLOCK_EXTRAS + (
    "import runpy\n"
    "sys.argv = ['ggic'] + sys.argv[1:]\n"
    "runpy.run_module('ggic', run_name='__main__', alter_sys=True)\n"
)


@pytest.mark.parametrize("component", ["classifier", "requester"])
def test_the_run_command_parses_without_optional_extras(component: str) -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, component, "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "usage:" in done.stdout


def test_blocking_an_extra_is_seen_by_the_entry_point() -> None:
    # the harness itself: with the extras blocked, importing one fails
    done = subprocess.run([sys.executable, "-c", BLOCK_EXTRAS + "import yaml\n"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "yaml" in done.stderr
