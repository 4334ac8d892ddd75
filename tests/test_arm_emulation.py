"""The real thing under emulation: the classifier recipe's aarch64 Install and Run in an arm64
Debian root filesystem (QEMU user-mode emulation, debootstrap), with a DLR 1.6.0 libdlr.so built
for aarch64 as variant.DLR would carry it, the demo model's kernels cross-compiled for aarch64
(``ggic model build-demo --target linux-aarch64``), on real photos: the same top-1 as on this
x86_64 machine.

Runs only where ``scripts/arm-emulation.sh rootfs`` has cached the root filesystem and an
aarch64 libdlr.so is at ``$GGIC_LIBDLR`` or ``<cache>/libdlr/aarch64/libdlr.so`` (README,
"Raspberry Pi and Jetson"); takes minutes (emulation).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("GGIC_ARM_CACHE") or REPO / ".ggic" / "arm-rootfs")
LIBDLR = Path(os.environ.get("GGIC_LIBDLR") or CACHE / "libdlr" / "aarch64" / "libdlr.so")
GGIC = [sys.executable, "-m", "ggic"]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (chroot, binfmt_misc)"
    if not (CACHE / "arm64" / ".ggic-ready").is_file():
        return f"no arm64 root filesystem at {CACHE / 'arm64'}: scripts/arm-emulation.sh rootfs"
    if not LIBDLR.is_file():
        return f"no aarch64 libdlr.so at {LIBDLR} (set GGIC_LIBDLR)"
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        return "needs Debian's gcc-aarch64-linux-gnu"
    return None


pytestmark = [pytest.mark.arm_emulation,
              pytest.mark.skipif(_missing() is not None, reason=_missing() or "")]


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


def test_the_aarch64_manifest_classifies_like_x86_64_under_emulation(
        tmp_path: Path, photos: list[Path]) -> None:
    images = photos[:3]
    native = tmp_path / "native"
    arm = tmp_path / "aarch64"
    for target, out in (("native", native), ("linux-aarch64", arm)):
        subprocess.run([*GGIC, "model", "build-demo", "--target", target, "--out", str(out)],
                       check=True, capture_output=True, timeout=600)
    here = subprocess.run([*GGIC, "classify", "--json", "--score-threshold", "0",
                           "--model-dir", str(native),
                           *map(str, images)], check=True, capture_output=True, text=True,
                          timeout=300)
    expected = top1(here.stdout)
    assert len(expected) == len(images), here.stdout + here.stderr

    emulated = subprocess.run(
        ["sh", str(REPO / "scripts" / "arm-emulation.sh"), "run", "--libdlr", str(LIBDLR),
         "--model", str(arm), "--json", *map(str, images)],
        capture_output=True, text=True, timeout=3000, env={**os.environ,
                                                            "GGIC_ARM_CACHE": str(CACHE)})
    output = emulated.stdout + emulated.stderr
    assert emulated.returncode == 0, output[-5000:]
    assert top1(emulated.stdout) == expected, output[-5000:]
    # the aarch64 library variant.DLR's venv carries, named by the classifier
    assert ("DLR native library /greengrass/v2/work/com.custom.ImageClassifier/venv/dlr/"
            "libdlr.so -> /greengrass/v2/work/variant.DLR/greengrass_ml/greengrass_ml_dlr_venv/"
            "dlr/libdlr.so (version 1.6.0, from variant.DLR") in output
    assert "installed the classifier's venv" in output
