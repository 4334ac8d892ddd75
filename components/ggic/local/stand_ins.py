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
"""

from __future__ import annotations

import platform as host_platform
import shutil
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
                              architecture: str | None = None) -> StandIn:
    """Write the stand-in folder ``out`` (replacing an earlier stand-in there).

    ``model_dir``: a DLR model directory to carry as this machine's (or ``architecture``'s)
    ResNet-50 model; None for no model.
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
    return StandIn(out, recipe_path, copied, arch)
