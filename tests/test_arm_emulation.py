"""The real thing under emulation: the classifier recipe's aarch64 and armv7l Install and Run in
arm64 / armhf Debian root filesystems (QEMU user-mode emulation, debootstrap), with a DLR 1.6.0
libdlr.so built for the architecture as variant.DLR would carry it, the demo model's kernels
cross-compiled for it (``ggic model build-demo --target linux-aarch64`` / ``linux-armv7l``), on
real photos: the same top-1 as on this x86_64 machine.

armv7l also needs the piwheels stand-in (``scripts/arm-emulation.sh --arch armhf
awscrt-wheel``): PyPI has no armv7l wheel of awscrt, Raspberry Pi OS gets it from piwheels.

Each architecture runs only where ``scripts/arm-emulation.sh [--arch armhf] rootfs`` has cached
its root filesystem and a libdlr.so for it is at ``<cache>/libdlr/<machine>/libdlr.so`` (or
``$GGIC_LIBDLR`` for aarch64, ``$GGIC_LIBDLR_ARMV7L`` for armv7l) (README, "Raspberry Pi and
Jetson"), and skips saying what is missing otherwise; takes minutes (emulation).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("GGIC_ARM_CACHE") or REPO / ".ggic" / "arm-rootfs")
GGIC = [sys.executable, "-m", "ggic"]
WORK = "/greengrass/v2/work"


@dataclass(frozen=True)
class Emulated:
    """One emulated architecture: Debian's name, uname's, the model target, what it needs."""

    debian_arch: str
    machine: str
    target: str
    cross_gcc: str
    cross_package: str
    libdlr_variable: str

    @property
    def libdlr(self) -> Path:
        given = os.environ.get(self.libdlr_variable)
        return Path(given) if given else CACHE / "libdlr" / self.machine / "libdlr.so"

    def missing(self) -> str | None:
        if os.geteuid() != 0:
            return "needs root (chroot, binfmt_misc)"
        rootfs = CACHE / self.debian_arch
        if not (rootfs / ".ggic-ready").is_file():
            return (f"no {self.debian_arch} root filesystem at {rootfs}: "
                    f"scripts/arm-emulation.sh --arch {self.debian_arch} rootfs")
        if not self.libdlr.is_file():
            return f"no {self.machine} libdlr.so at {self.libdlr} (set {self.libdlr_variable})"
        if shutil.which(self.cross_gcc) is None:
            return f"needs Debian's {self.cross_package}"
        if self.machine == "armv7l" and not any(
                (CACHE / "piwheels" / "armv7l" / "simple" / "awscrt").glob("awscrt-*.whl")):
            return ("no armv7l awscrt wheel in the piwheels stand-in "
                    f"{CACHE / 'piwheels' / 'armv7l'}: "
                    "scripts/arm-emulation.sh --arch armhf awscrt-wheel")
        return None


AARCH64 = Emulated("arm64", "aarch64", "linux-aarch64", "aarch64-linux-gnu-gcc",
                   "gcc-aarch64-linux-gnu", "GGIC_LIBDLR")
ARMV7L = Emulated("armhf", "armv7l", "linux-armv7l", "arm-linux-gnueabihf-gcc",
                  "gcc-arm-linux-gnueabihf", "GGIC_LIBDLR_ARMV7L")

pytestmark = pytest.mark.arm_emulation


def top1(output: str) -> dict[str, str]:
    """image file name -> top-1 label, from ``ggic classify --json`` lines."""
    found = {}
    for line in output.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            if result.get("status") == "ok":
                name = Path(result["image"]).name
                found[name] = result["predictions"][0]["label"]
    return found


def test_top1_reads_the_first_prediction_of_each_ok_line() -> None:
    lines = "\n".join([
        "/tmp/images/a.png: espresso (0.9)",
        json.dumps({"image": "/tmp/images/a.png", "status": "ok",
                    "predictions": [{"label": "espresso"}, {"label": "cup"}]}),
        json.dumps({"image": "/tmp/images/b.png", "status": "error", "predictions": []}),
    ])
    assert top1(lines) == {"a.png": "espresso"}


@pytest.mark.parametrize("emulated", [
    pytest.param(AARCH64, id="aarch64",
                 marks=pytest.mark.skipif(AARCH64.missing() is not None,
                                          reason=AARCH64.missing() or "")),
    pytest.param(ARMV7L, id="armv7l",
                 marks=pytest.mark.skipif(ARMV7L.missing() is not None,
                                          reason=ARMV7L.missing() or "")),
])
def test_the_arm_manifest_classifies_like_x86_64_under_emulation(
        emulated: Emulated, tmp_path: Path, photos: list[Path]) -> None:
    images = photos[:3]
    native = tmp_path / "native"
    arm = tmp_path / emulated.machine
    for target, out in (("native", native), (emulated.target, arm)):
        subprocess.run([*GGIC, "model", "build-demo", "--target", target, "--out", str(out)],
                       check=True, capture_output=True, timeout=900)
    here = subprocess.run([*GGIC, "classify", "--json", "--score-threshold", "0",
                           "--model-dir", str(native),
                           *map(str, images)], check=True, capture_output=True, text=True,
                          timeout=300)
    expected = top1(here.stdout)
    assert len(expected) == len(images), here.stdout + here.stderr

    emulated_run = subprocess.run(
        ["sh", str(REPO / "scripts" / "arm-emulation.sh"), "--arch", emulated.debian_arch,
         "run", "--libdlr", str(emulated.libdlr), "--model", str(arm), "--json",
         *map(str, images)],
        capture_output=True, text=True, timeout=3600, env={**os.environ,
                                                            "GGIC_ARM_CACHE": str(CACHE)})
    output = emulated_run.stdout + emulated_run.stderr
    assert emulated_run.returncode == 0, output[-5000:]
    assert top1(emulated_run.stdout) == expected, output[-5000:]
    # the library variant.DLR's venv carries, named by the classifier
    assert (f"DLR native library {WORK}/com.custom.ImageClassifier/venv/dlr/"
            f"libdlr.so -> {WORK}/variant.DLR/greengrass_ml/greengrass_ml_dlr_venv/"
            "dlr/libdlr.so (version 1.6.0, from variant.DLR") in output
    assert "installed the classifier's venv" in output
    # the awscrt the Install step's pip chose is built for this machine (armv7l: the piwheels
    # stand-in's, PyPI has none)
    awscrt = next((line for line in output.splitlines() if line.startswith("awscrt ")), "")
    assert re.search(rf"linux[_0-9]*_{emulated.machine}\b", awscrt), output[-5000:]
