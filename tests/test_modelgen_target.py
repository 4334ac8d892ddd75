"""``ggic model build-demo --target``: the demo model's kernels cross-compiled for a device
(Debian's gcc-aarch64-linux-gnu), checked in the ELF header the dynamic loader reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ggic.cli import main

EM_AARCH64 = 0xB7


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    return int.from_bytes(header[18:20], "little")


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None,
                    reason="needs Debian's gcc-aarch64-linux-gnu")
def test_build_demo_for_aarch64_writes_arm64_kernels(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    out = tmp_path / "lite0-aarch64"
    assert main(["model", "build-demo", "--target", "linux-aarch64", "--out", str(out)]) == 0
    assert elf_machine(out / "compiled.so") == EM_AARCH64
    meta = json.loads((out / "compiled.meta").read_text())
    assert meta["Requirements"]["TargetArchitecture"] == "aarch64"
    assert meta["Requirements"]["TargetPlatform"] == "linux-aarch64"
    assert "-march=armv8-a" in meta["Compilation"]["Flags"]


def test_a_missing_cross_compiler_is_named_with_its_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on it
    code = main(["model", "build-demo", "--target", "linux-armv7l", "--out",
                 str(tmp_path / "m")])
    assert code == 2
    assert ("arm-linux-gnueabihf-gcc is not installed: apt-get install "
            "gcc-arm-linux-gnueabihf") in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


EM_ARM = 0x28


@pytest.mark.skipif(shutil.which("arm-linux-gnueabihf-gcc") is None,
                    reason="needs Debian's gcc-arm-linux-gnueabihf")
def test_build_demo_for_armv7l_writes_32_bit_arm_kernels(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # tvm_abi.h checks dlpack's DLTensor layout for 32-bit pointers there
    monkeypatch.delenv("CC", raising=False)
    out = tmp_path / "lite0-armv7l"
    assert main(["model", "build-demo", "--target", "linux-armv7l", "--out", str(out)]) == 0
    assert elf_machine(out / "compiled.so") == EM_ARM
    assert json.loads((out / "compiled.meta").read_text())["Requirements"][
        "TargetArchitecture"] == "armv7l"
