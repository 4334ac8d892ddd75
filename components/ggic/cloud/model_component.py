"""A Greengrass model component from a Neo-compiled model archive, and how to use it.

The compiled ``model-*.tar.gz`` is unpacked safely and checked as a DLR model directory,
then repacked as a ZIP (the only archive Greengrass unpacks: ``Unarchive: ZIP``) with this
layout, the labels kept outside the model folder because DLR refuses a folder with a second
``*.json``::

    neo-model.zip
      model/compiled.so, compiled.params, compiled_model.json, compiled.meta, ...
      imagenet_class_index.json        (the labels, when given)

The component is written in ``ggic build``'s layout (``greengrass-build/recipes`` and
``greengrass-build/artifacts/<name>/<version>``), so ``ggic cloud publish`` publishes it and
``greengrass-cli deployment create --recipeDir --artifactDir`` deploys it. On a device the zip
is unpacked to ``<root>/packages/artifacts-unarchived/<name>/<version>/neo-model/``, readable
by every user (``Permission: Read: ALL``) so the classifier's user can load it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..classifier.backends.base import ModelLoadError
from ..classifier.backends.dlr import ModelFiles, find_model_files, read_signature
from ..classifier.labels import LabelsError, load_labels
from ..gdk_build import BUILD_DIR, BUILD_URI_PREFIX, write_recipe
from ..semver import is_version
from .neo import GreengrassPlatform
from .safe_tar import safe_extract

log = logging.getLogger(__name__)

ARTIFACT_STEM = "neo-model"
MODEL_SUBDIR = "model"
CLASSIFIER = "com.custom.ImageClassifier"
PROFILE = "neo-vgg16"
DEFAULT_GREENGRASS_ROOT = "/greengrass/v2"
CONFIG_FILE_NAME = "classifier-config.json"
_COMPONENT_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")


class ModelComponentError(ValueError):
    """The compiled archive, labels or component settings cannot make a model component."""


@dataclass(frozen=True)
class ModelComponent:
    name: str
    version: str
    recipe_path: Path
    artifact_path: Path
    model_dir: Path
    files: ModelFiles
    labels_name: str | None
    platform: GreengrassPlatform

    def device_dir(self, greengrass_root: str = DEFAULT_GREENGRASS_ROOT) -> str:
        """Where the nucleus unpacks the zip on a device."""
        return (f"{greengrass_root.rstrip('/')}/packages/artifacts-unarchived/{self.name}/"
                f"{self.version}/{ARTIFACT_STEM}")

    def classifier_merge(self, greengrass_root: str = DEFAULT_GREENGRASS_ROOT) -> dict[str, str]:
        """The classifier's configuration with concrete device paths (works on any nucleus
        once the model component is deployed to the device)."""
        return self._merge(self.device_dir(greengrass_root))

    def classifier_merge_with_variable(self) -> dict[str, str]:
        """The same with ``{<model>:artifacts:decompressedPath}`` (direct dependency only)."""
        return self._merge(f"{{{self.name}:artifacts:decompressedPath}}/{ARTIFACT_STEM}")

    def _merge(self, base: str) -> dict[str, str]:
        merge = {"ModelDir": f"{base}/{MODEL_SUBDIR}", "ModelProfile": PROFILE}
        merge["LabelsPath"] = f"{base}/{self.labels_name}" if self.labels_name else ""
        return merge


def check_component(name: str, version: str) -> None:
    if not _COMPONENT_NAME.match(name):
        raise ModelComponentError(
            f"component name {name!r}: letters, digits, '.', '-' and '_' only (e.g. "
            "com.example.VGG16Model)")
    if not is_version(version):
        raise ModelComponentError(f"component version {version!r} is not semantic (1.0.0)")


def unpack_compiled_model(archive: Path, dest: Path) -> ModelFiles:
    """Unpack a compiled archive safely into ``dest`` (replaced) and check it with
    :func:`find_model_files` (the model may sit at the top or in one folder)."""
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        safe_extract(archive, staging)
        model_root = _model_root(staging)
        try:
            find_model_files(model_root)
        except ModelLoadError as exc:
            raise ModelComponentError(f"{archive} does not hold a DLR model: {exc}") from None
        if dest.exists():
            shutil.rmtree(dest)
        model_root.rename(dest)
        dest.chmod(0o755)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return find_model_files(dest)


def _model_root(folder: Path) -> Path:
    if any(p.suffix == ".params" for p in folder.iterdir() if p.is_file()):
        return folder
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    if len(subdirs) == 1:
        return _model_root(subdirs[0])
    return folder


def _check_labels(labels: Path, files: ModelFiles) -> None:
    try:
        loaded = load_labels(labels)
    except LabelsError as exc:
        raise ModelComponentError(str(exc)) from None
    try:
        outputs = read_signature(files).outputs
    except ModelLoadError as exc:
        log.warning("cannot read the model's outputs to check the labels: %s", exc)
        return
    if outputs and outputs[0].shape and not loaded.covers(int(outputs[0].shape[-1])):
        raise ModelComponentError(
            f"{labels} has {len(loaded)} labels but the model outputs "
            f"{outputs[0].shape[-1]} classes")


def _zip_model(model_dir: Path, labels: Path | None, zip_path: Path) -> None:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                z.write(path, f"{MODEL_SUBDIR}/{path.relative_to(model_dir).as_posix()}")
        if labels is not None:
            z.write(labels, labels.name)


def model_recipe(name: str, version: str, platform: GreengrassPlatform, description: str,
                 publisher: str = "ggic") -> dict[str, Any]:
    """The recipe: one manifest for the compiled platform, the zip unpacked, readable by all."""
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": description,
        "ComponentPublisher": publisher,
        "Manifests": [{
            "Name": platform.label,
            "Platform": platform.manifest_platform(),
            "Artifacts": [{
                "URI": f"{BUILD_URI_PREFIX}/{ARTIFACT_STEM}.zip",
                "Unarchive": "ZIP",
                "Permission": {"Read": "ALL"},
            }],
        }],
    }


def build_model_component(compiled_archive: Path, out_dir: Path, *, name: str,
                          platform: GreengrassPlatform, version: str = "1.0.0",
                          labels: Path | None = None, source: str = "",
                          publisher: str = "ggic",
                          greengrass_root: str = DEFAULT_GREENGRASS_ROOT) -> ModelComponent:
    """Unpack and check the compiled model, then write the component and the classifier
    configuration into ``out_dir`` (``model/``, ``greengrass-build/``, ``classifier-config.json``).
    """
    check_component(name, version)
    if labels is not None and not labels.is_file():
        raise ModelComponentError(f"labels file {labels} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = unpack_compiled_model(compiled_archive, out_dir / MODEL_SUBDIR)
    if labels is not None:
        _check_labels(labels, files)
    build = out_dir / BUILD_DIR
    artifacts = build / "artifacts" / name / version
    if artifacts.exists():
        shutil.rmtree(artifacts)
    zip_path = artifacts / f"{ARTIFACT_STEM}.zip"
    _zip_model(files.directory, labels, zip_path)
    description = (f"DLR model compiled by SageMaker Neo for {platform.label}"
                   f"{f' ({source})' if source else ''}: {ARTIFACT_STEM}/{MODEL_SUBDIR}"
                   f"{f' and the labels {ARTIFACT_STEM}/{labels.name}' if labels else ''}.")
    recipe_path = build / "recipes" / f"{name}.yaml"
    recipe_path.parent.mkdir(parents=True, exist_ok=True)
    write_recipe(recipe_path, model_recipe(name, version, platform, description, publisher))
    component = ModelComponent(name, version, recipe_path, zip_path, files.directory, files,
                               labels.name if labels else None, platform)
    config = {CLASSIFIER: {"MERGE": component.classifier_merge(greengrass_root)}}
    (out_dir / CONFIG_FILE_NAME).write_text(json.dumps(config, indent=2) + "\n",
                                            encoding="utf-8")
    log.info("wrote model component %s %s into %s", name, version, build)
    return component


def classifier_instructions(component: ModelComponent, out_dir: Path,
                            greengrass_root: str = DEFAULT_GREENGRASS_ROOT) -> str:
    """What to tell the user: where things are and how the classifier gets to the model."""
    files = component.files
    model_files = ", ".join(p.name for p in (files.library, files.params, files.graph, files.meta)
                            if p is not None)
    variable = component.classifier_merge_with_variable()
    concrete = {CLASSIFIER: {"MERGE": component.classifier_merge(greengrass_root)}}
    build = out_dir / BUILD_DIR
    lines = [
        f"Model component {component.name} {component.version} ({component.platform.label})",
        f"  recipe:   {component.recipe_path}",
        f"  artifact: {component.artifact_path}",
        f"  model:    {component.model_dir} (a DLR model: {model_files})",
        "",
        "Publish it:",
        f"  ggic cloud publish --build-dir {build} --bucket-prefix <prefix> --region <region>",
        "or deploy it on the device with greengrass-cli:",
        f"  sudo {greengrass_root}/bin/greengrass-cli deployment create --recipeDir "
        f"{build}/recipes --artifactDir {build}/artifacts "
        f"--merge {component.name}={component.version}",
        "",
        f"Classifier configuration (ModelProfile {PROFILE}: input0 NCHW, RGB /255, ImageNet "
        "mean/std, resize 256 + centre crop 224):",
        f"  ModelDir:     {variable['ModelDir']}",
        f"  ModelProfile: {variable['ModelProfile']}",
        f"  LabelsPath:   {variable['LabelsPath'] or '(none given: results name class numbers)'}",
        "",
        f"The classifier can only use {{{component.name}:artifacts:decompressedPath}} if "
        f"{component.name} is a DIRECT dependency in its own recipe. Either:",
        f"  a) add it to the classifier's recipe (recipes/{CLASSIFIER}.yaml) and build again:",
        "       ComponentDependencies:",
        f"         {component.name}:",
        f"           VersionRequirement: '={component.version}'",
        "           DependencyType: HARD",
        "     then use the values above (recipe variables inside configuration values need a "
        "nucleus that interpolates them: interpolateComponentConfiguration, nucleus 2.6.0+);",
        f"  b) or deploy {component.name} next to the classifier and set ModelDir to the "
        "unpacked path on the device:",
        f"       {json.dumps(concrete)}",
        f"     (written to {out_dir / CONFIG_FILE_NAME}: pass it as --update-config to "
        "`ggic cloud deploy` or scripts/deploy-local.sh).",
    ]
    if component.platform.architecture is None:
        lines += ["", "The recipe's manifest names no architecture (unknown for this target "
                      "device): make sure only matching devices get it."]
    return "\n".join(lines)
