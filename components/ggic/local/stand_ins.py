"""Stand-in components: local replacements for public components that can't be downloaded.

The classifier depends on AWS's ``variant.DLR.ImageClassification.ModelStore`` (>=2.1.0
<2.2.0), which the nucleus downloads from AWS. :func:`write_modelstore_stand_in` writes a
component with that name and version that the local runtime can deploy instead, in GDK's
build layout (so it works both as ``ggic local start --stand-in DIR`` and as
``--recipeDir DIR/recipes --artifactDir DIR/artifacts``)::

    DIR/recipes/variant.DLR.ImageClassification.ModelStore-2.1.0.yaml
    DIR/artifacts/variant.DLR.ImageClassification.ModelStore/2.1.0/
        DLR-resnet50-<arch>-cpu-ImageClassification/      (the model, as the unpacked ZIP)

Like the real component it has one manifest per architecture, each with a ZIP artifact named
``DLR-resnet50-<arch>-cpu-ImageClassification.zip`` (``Read: OWNER``) and no lifecycle (it
only carries files, so it is FINISHED once deployed). Without a model it carries no artifacts:
the classifier's Install step then says so, and ModelDir must name a model.

The classifier also depends on AWS's ``variant.DLR``, whose installer (aws-greengrass-labs-ml-
components, ``dlr/variant.DLR/installer/installer.sh``; Install runs as root from its work
directory) lays out, on a Raspberry Pi or Jetson::

    {MLRootPath}/greengrass_ml_dlr_venv/            MLRootPath: ../variant.DLR/greengrass_ml
        bin/python3, bin/activate                   python3 -m venv [--system-site-packages]
        lib/python3.X/site-packages/dlr/            the Python dlr 1.6.0 (its device wheel)
        dlr/libdlr.so                               the wheel's data_files: DLR 1.6.0's library
        (awsiotsdk, and numpy/opencv-python unless the OS has them: pip, into the venv)

(on x86_64 a conda environment, greengrass_ml_dlr_conda, instead). Its stand-in
(:func:`write_variant_dlr_stand_in`, recipe ``variant.DLR-1.6.0.yaml`` and the unpacked
``variant.DLR.zip``) has the same name, configuration (``MLRootPath``, ``UseInstaller``) and
Install command line, and its installer lays out the same venv, with the same name and paths,
on every architecture: the dlr 1.6.0 package and ``dlr/libdlr.so`` copied from this machine's
dlr==1.6.0 (an x86_64 library, since the code still runs here), and, standing for the OS's
site packages, a ``.pth`` to the environment ggic runs from (numpy, OpenCV, awsiotsdk).
"""

from __future__ import annotations

import importlib.util
import platform as host_platform
import shlex
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import yaml

MODELSTORE_COMPONENT = "variant.DLR.ImageClassification.ModelStore"
MODELSTORE_VERSION = "2.1.0"
#: The nucleus's architecture label -> the ModelStore's folder architecture.
MODELSTORE_ARCHITECTURES = {"amd64": "x86_64", "aarch64": "aarch64", "arm": "armv7l"}
_MACHINE_TO_FOLDER = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64",
                      "arm64": "aarch64", "armv7l": "armv7l", "armv8l": "armv7l"}


class StandInError(ValueError):
    pass


@dataclass(frozen=True)
class StandIn:
    folder: Path
    recipe: Path
    model_dir: Path | None
    """The unpacked model artifact for ``architecture`` (None: no model)."""
    architecture: str


def model_folder_name(architecture: str) -> str:
    """``x86_64`` -> ``DLR-resnet50-x86_64-cpu-ImageClassification``."""
    return f"DLR-resnet50-{architecture}-cpu-ImageClassification"


def this_architecture() -> str:
    """This machine as the ModelStore names architectures (x86_64, aarch64, armv7l)."""
    machine = host_platform.machine().lower()
    try:
        return _MACHINE_TO_FOLDER[machine]
    except KeyError:
        raise StandInError(f"the ModelStore has no model for a {machine!r} machine; "
                           f"known: {', '.join(sorted(set(_MACHINE_TO_FOLDER.values())))}"
                           ) from None


def modelstore_recipe(version: str = MODELSTORE_VERSION, with_artifacts: bool = True) -> dict:
    manifests = []
    for label, folder_arch in MODELSTORE_ARCHITECTURES.items():
        manifest: dict = {
            "Name": f"Linux {folder_arch} (local stand-in)",
            "Platform": {"os": "linux", "architecture": label},
            "Lifecycle": {},
        }
        if with_artifacts:
            manifest["Artifacts"] = [{
                "URI": f"s3://ggic-local-stand-in/{MODELSTORE_COMPONENT}/{version}/"
                       f"{model_folder_name(folder_arch)}.zip",
                "Unarchive": "ZIP",
                "Permission": {"Read": "OWNER", "Execute": "NONE"},
            }]
        manifests.append(manifest)
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": MODELSTORE_COMPONENT,
        "ComponentVersion": version,
        "ComponentType": "aws.greengrass.generic",
        "ComponentDescription": (
            "Local stand-in for AWS's public ModelStore component (ResNet-50 image "
            "classification models), written by `ggic local stand-in modelstore` for the ggic "
            "local runtime. " + ("Carries a model for this machine." if with_artifacts else
                                 "Carries no model: set the classifier's ModelDir.")),
        "ComponentPublisher": "ggic (local stand-in)",
        "Manifests": manifests,
    }


def write_modelstore_stand_in(out: Path, model_dir: Path | None = None, *,
                              version: str = MODELSTORE_VERSION,
                              architecture: str | None = None,
                              with_variant_dlr: bool = True) -> StandIn:
    """Write the stand-in folder ``out`` (replacing an earlier stand-in there).

    ``model_dir``: a DLR model directory to carry as this machine's (or ``architecture``'s)
    ResNet-50 model; None for no model. ``with_variant_dlr``: also write the variant.DLR
    stand-in (:func:`write_variant_dlr_stand_in`) into ``out``, since the classifier needs both.
    """
    out = Path(out)
    arch = architecture or this_architecture()
    if arch not in MODELSTORE_ARCHITECTURES.values():
        raise StandInError(f"architecture {arch!r}: the ModelStore has "
                           f"{', '.join(MODELSTORE_ARCHITECTURES.values())}")
    if model_dir is not None and not Path(model_dir).is_dir():
        raise StandInError(f"--model {model_dir} is not a directory")
    recipes = out / "recipes"
    artifacts = out / "artifacts" / MODELSTORE_COMPONENT / version
    for stale in (recipes, out / "artifacts" / MODELSTORE_COMPONENT):
        if stale.exists():
            shutil.rmtree(stale)
    recipes.mkdir(parents=True)
    recipe_path = recipes / f"{MODELSTORE_COMPONENT}-{version}.yaml"
    recipe = modelstore_recipe(version, with_artifacts=model_dir is not None)
    recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    copied = None
    if model_dir is not None:
        copied = artifacts / model_folder_name(arch)
        shutil.copytree(model_dir, copied)
    if with_variant_dlr:
        write_variant_dlr_stand_in(out)
    return StandIn(out, recipe_path, copied, arch)


VARIANT_DLR_COMPONENT = "variant.DLR"
VARIANT_DLR_VERSION = "1.6.0"
ML_ROOT_DEFAULT = "../variant.DLR/greengrass_ml"
DLR_VENV_NAME = "greengrass_ml_dlr_venv"
#: The nucleus's architectures variant.DLR has a Linux manifest for.
VARIANT_DLR_ARCHITECTURES = ("arm", "amd64", "aarch64")

_INSTALLER = """#!/bin/sh
# ggic's stand-in for variant.DLR's installer.sh: the same command line (-p MLRootPath
# -i UseInstaller) and the same layout, {MLRootPath}/greengrass_ml_dlr_venv.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ml_root=; use_installer=true
while getopts ":p:e:i:" opt; do
    case $opt in p) ml_root=$OPTARG ;; i) use_installer=$OPTARG ;; *) ;; esac
done
if [ "$use_installer" != true ]; then echo "Skipping installation"; exit 0; fi
[ -n "$ml_root" ] || { echo "ML root path cannot be null or empty." >&2; exit 1; }
mkdir -p "$ml_root"
ml_root=$(cd "$ml_root" && pwd)
venv=$ml_root/greengrass_ml_dlr_venv
if [ -f "$venv/bin/activate" ] && [ -f "$venv/dlr/libdlr.so" ]; then
    echo "Skipping DLR installation as it already exists."; exit 0
fi
rm -rf "$venv"
{python} -m venv --without-pip --system-site-packages "$venv"
site=$("$venv/bin/python3" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp -R "$here/../stand-in/dlr" "$site/dlr"
mkdir -p "$venv/dlr"
cp "$here/../stand-in/libdlr.so" "$venv/dlr/libdlr.so"
# standing for the OS's site packages (python3-numpy, python3-opencv) and the awsiotsdk that
# variant.DLR's installer pip-installs
printf '%s\\n' {system_site} > "$site/ggic-stand-in-system-site.pth"
# as the installer's disable_metric_collection leaves it
printf '{"enable_phone_home": false}' > "$site/dlr/counter/ccm_config.json"
echo "DLR 1.6.0 (stand-in) installed in $venv"
"""


def _installed_dlr() -> tuple[Path, Path]:
    """This environment's dlr 1.6.0: its Python package folder and its libdlr.so."""
    spec = importlib.util.find_spec("dlr")  # finds without importing (no phone-home)
    if spec is None or spec.origin is None:
        raise StandInError("the dlr package is not installed here (pip install dlr==1.6.0)")
    package = Path(spec.origin).parent
    for library in (Path(sys.prefix) / "dlr" / "libdlr.so", package / "libdlr.so"):
        if library.is_file():
            return package, library
    raise StandInError(f"no libdlr.so beside {package} or in {sys.prefix}/dlr "
                       "(only the x86_64 dlr==1.6.0 wheel ships one)")


def variant_dlr_recipe(version: str = VARIANT_DLR_VERSION) -> dict:
    script = ("sh '{artifacts:decompressedPath}/variant.DLR/installer/installer.sh' "
              "-p '{configuration:/MLRootPath}' -i '{configuration:/UseInstaller}'")
    manifests = [{
        "Platform": {"os": "linux", "architecture": arch},
        "Lifecycle": {"Install": {"RequiresPrivilege": True, "Script": script,
                                  "Timeout": 900}},
        "Artifacts": [{
            "URI": f"s3://ggic-local-stand-in/{VARIANT_DLR_COMPONENT}/{version}/"
                   "variant.DLR.zip",
            "Unarchive": "ZIP",
            "Permission": {"Read": "OWNER", "Execute": "NONE"},
        }],
    } for arch in VARIANT_DLR_ARCHITECTURES]
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": VARIANT_DLR_COMPONENT,
        "ComponentVersion": version,
        "ComponentType": "aws.greengrass.generic",
        "ComponentDescription": (
            "Local stand-in for AWS's public variant.DLR (DLR 1.6.0 in "
            "{MLRootPath}/greengrass_ml_dlr_venv), written by `ggic local stand-in "
            "modelstore` for the ggic local runtime; carries this machine's dlr==1.6.0."),
        "ComponentPublisher": "ggic (local stand-in)",
        "ComponentConfiguration": {"DefaultConfiguration": {
            "MLRootPath": ML_ROOT_DEFAULT, "UseInstaller": "true"}},
        "Manifests": manifests,
    }


def write_variant_dlr_stand_in(out: Path, version: str = VARIANT_DLR_VERSION) -> Path:
    """Write the variant.DLR stand-in into ``out`` (GDK's build layout); return its recipe."""
    out = Path(out)
    package, library = _installed_dlr()
    recipes = out / "recipes"
    recipes.mkdir(parents=True, exist_ok=True)
    home = out / "artifacts" / VARIANT_DLR_COMPONENT
    if home.exists():
        shutil.rmtree(home)
    unpacked = home / version / "variant.DLR"
    (unpacked / "installer").mkdir(parents=True)
    installer = _INSTALLER.replace("{python}", shlex.quote(sys.executable)).replace(
        "{system_site}", shlex.quote(sysconfig.get_paths()["purelib"]))
    (unpacked / "installer" / "installer.sh").write_text(installer, encoding="utf-8")
    shutil.copytree(package, unpacked / "stand-in" / "dlr",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(library, unpacked / "stand-in" / "libdlr.so")
    recipe_path = recipes / f"{VARIANT_DLR_COMPONENT}-{version}.yaml"
    recipe_path.write_text(yaml.safe_dump(variant_dlr_recipe(version), sort_keys=False),
                           encoding="utf-8")
    return recipe_path
