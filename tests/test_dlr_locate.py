"""Which libdlr.so the classifier loads: DLR 1.6's own search, checked and logged, through the
real libdlr.so of dlr==1.6.0, real processes and real shared libraries built with gcc."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from ggic.classifier.backends.dlr import dlr_library_for, import_dlr
from ggic.classifier.backends.dlr_locate import (
    DLR_VENV_ENV,
    REQUIRED_SYMBOLS,
    DlrUnavailable,
    library_version,
    prepare_dlr,
)
from ggic.classifier.model import load_model
from ggic.classifier.profiles import resolve_profile
from ggic.modelgen.testnets import write_modelstore_like

REPO = Path(__file__).resolve().parents[1]
PACKAGED_LIBRARY = Path(sys.prefix) / "dlr" / "libdlr.so"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_modelstore_like(tmp_path_factory.mktemp("m") / "model", seed=3,
                                 num_classes=10, size=32).model_dir


def fake_libdlr(path: Path, version: str, symbols: tuple[str, ...]) -> Path:
    """A shared library exporting ``symbols`` (all returning 0; GetDLRVersion ``version``)."""
    body = [f'int GetDLRVersion(const char** out) {{ *out = "{version}"; return 0; }}']
    body += [f"int {name}(void) {{ return 0; }}" for name in symbols if name != "GetDLRVersion"]
    source = path.with_suffix(".c")
    source.write_text("\n".join(body) + "\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), str(source)], check=True)
    source.unlink()
    return path


def test_the_packaged_library_is_found_checked_and_logged(
        model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert library_version(PACKAGED_LIBRARY) == "1.6.0"
    with caplog.at_level(logging.INFO, logger="ggic.classifier.backends.dlr_locate"):
        model = load_model(model_dir, resolve_profile("auto"))
    model.close()
    line = next(r.getMessage() for r in caplog.records if "DLR native library" in r.getMessage())
    assert f"DLR native library {PACKAGED_LIBRARY} (version 1.6.0" in line
    assert "the dlr package's environment" in line
    assert "Python dlr 1.6.0" in line


def test_a_library_that_is_not_dlr_1_6_is_refused_with_what_to_deploy(
        model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    fake_libdlr(model / "libdlr.so", "1.10.0", ("GetDLRVersion", "CreateDLRModel"))
    monkeypatch.setenv(DLR_VENV_ENV, "/greengrass/v2/work/variant.DLR/greengrass_ml/"
                                     "greengrass_ml_dlr_venv")
    with pytest.raises(DlrUnavailable) as caught:
        load_model(model, resolve_profile("auto"))
    text = str(caught.value)
    assert "lacks DeleteDLRModel, RunDLRModel" in text
    assert "which the Python dlr 1.6.0 calls" in text
    assert "deploy variant.DLR with this component" in text


def test_a_version_mismatch_is_logged(model_dir: Path, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    fake_libdlr(model / "libdlr.so", "1.5.0", REQUIRED_SYMBOLS)
    with caplog.at_level(logging.INFO, logger="ggic.classifier.backends.dlr_locate"):
        dlr = prepare_dlr(model, import_dlr, dlr_library_for)
    assert dlr.__version__ == "1.6.0"
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"DLR native library {model / 'libdlr.so'} (version 1.5.0, from the model "
               "directory)" in m for m in messages), messages
    assert any("is version 1.5.0 but the Python dlr package is 1.6.0" in m for m in messages)


def venv_over_this_one(where: Path) -> Path:
    """A venv whose site-packages reach this environment's through a .pth file: the way the
    Install step builds the component's venv on top of variant.DLR's."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"], check=True,
                          capture_output=True, text=True).stdout.strip()
    (Path(site) / "ggic-variant-dlr.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n" + str(REPO / "components") + "\n")
    return python


LOAD = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ggic.classifier.model import load_model
    from ggic.classifier.profiles import resolve_profile
    from ggic.classifier.model import ModelLoadError
    try:
        load_model(sys.argv[1], resolve_profile("auto"))
    except ModelLoadError as exc:
        print("ModelLoadError:", exc)
        sys.exit(3)
    print("loaded")
""")


def test_without_a_library_in_the_venv_it_says_what_to_deploy_and_a_link_fixes_it(
        model_dir: Path, tmp_path: Path) -> None:
    python = venv_over_this_one(tmp_path / "venv")
    env = {**os.environ, DLR_VENV_ENV: str(Path(sys.prefix))}
    env.pop("DLR_LIBRARY_PATH", None)
    missing = subprocess.run([str(python), "-c", LOAD, str(model_dir)], env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 3, missing.stderr
    assert "libdlr.so was not found" in missing.stdout
    assert f"deploy variant.DLR with this component (its installer puts DLR 1.6.0 with " \
           f"libdlr.so into {sys.prefix}" in missing.stdout

    # what the Install step does on arm: link variant.DLR's library into <venv>/dlr/
    (tmp_path / "venv" / "dlr").mkdir()
    (tmp_path / "venv" / "dlr" / "libdlr.so").symlink_to(PACKAGED_LIBRARY)
    found = subprocess.run([str(python), "-c", LOAD, str(model_dir)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stdout + found.stderr
    assert (f"DLR native library {tmp_path / 'venv' / 'dlr' / 'libdlr.so'} -> "
            f"{PACKAGED_LIBRARY.resolve()} (version 1.6.0, from variant.DLR ({sys.prefix}))"
            ) in found.stderr
    assert "loaded" in found.stdout
