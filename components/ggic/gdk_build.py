"""``ggic build``: GDK's zip build, for every component of the project, without GDK.

GDK (the Greengrass Development Kit CLI) is not on PyPI, so CI cannot run ``gdk component
build``. This module does what GDK 1.6's ``zip`` build system does, step for step, so its
output for a component is what ``gdk component build`` produces from the same folder:

1. the component folder (the folder of its ``gdk-config.json``) is copied, following
   symbolic links, without ``gdk-config.json``, ``greengrass-build``, the recipe file and the
   ``excludes`` globs (or GDK's default exclusions when ``options`` is empty);
2. the copy is zipped as ``<zip_name>.zip`` (``zip_name`` empty: the component name; absent:
   the folder name), the zip's root being the folder's content;
3. the recipe (``recipe.yaml``/``recipe.json`` beside the config, symbolic links resolved, so
   the built recipe takes the target's file name) gets ComponentName, ComponentVersion and
   ComponentPublisher from the config; each ``s3://`` artifact whose file the build produced is
   copied to ``greengrass-build/artifacts/<name>/<version>/`` and its URI becomes
   ``s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/<file>`` (rewritten by ``gdk component
   publish``); an ``s3://`` artifact the build did not produce is an error here (GDK would look
   it up in S3);
4. the recipe is written to ``greengrass-build/recipes/`` (YAML via ``yaml.safe_dump`` with
   keys in order, JSON with 4-space indent).

Unlike GDK, all components can be built into one ``greengrass-build`` folder, which is what
``greengrass-cli deployment create --recipeDir --artifactDir`` and ``ggic local deploy`` take.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIG_FILE = "gdk-config.json"
BUILD_DIR = "greengrass-build"
S3_PREFIX = "s3://"
BUILD_URI_PREFIX = "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION"
GDK_DEFAULT_EXCLUDES = ("**/test*", "**/.*", "**/node_modules")


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class ComponentProject:
    """One GDK component project: a folder with gdk-config.json and recipe.yaml/json."""

    folder: Path
    name: str
    version: str
    author: str
    build_system: str
    options: Mapping[str, Any]
    recipe_file: Path

    @classmethod
    def load(cls, folder: Path) -> ComponentProject:
        config_path = folder / CONFIG_FILE
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BuildError(f"cannot read {config_path}: {exc}") from None
        components = config.get("component") or {}
        if len(components) != 1:
            raise BuildError(f"{config_path}: GDK allows exactly one component per config")
        ((name, component),) = components.items()
        build = component.get("build") or {}
        return cls(
            folder=folder,
            name=name,
            version=str(component.get("version", "NEXT_PATCH")),
            author=str(component.get("author", "")),
            build_system=str(build.get("build_system", "")),
            options=build.get("options") or {},
            recipe_file=find_recipe(folder),
        )

    @property
    def zip_name(self) -> str:
        setting = self.options.get("zip_name")
        if setting is None:
            return self.folder.resolve().name
        return setting or self.name

    def ignore_patterns(self) -> list[str]:
        patterns = [CONFIG_FILE, BUILD_DIR, self.recipe_file.name]
        if not self.options:
            patterns.extend(GDK_DEFAULT_EXCLUDES)
        else:
            patterns.extend(self.options.get("excludes", []))
        return patterns


def find_recipe(folder: Path) -> Path:
    json_recipe, yaml_recipe = folder / "recipe.json", folder / "recipe.yaml"
    found = [p for p in (json_recipe, yaml_recipe) if p.exists()]
    if len(found) != 1:
        raise BuildError(
            f"{folder} must hold exactly one of recipe.json and recipe.yaml (GDK's rule)"
        )
    return found[0].resolve()


def ignored_paths(root: Path, patterns: Iterable[str]) -> set[str]:
    """Every path a GDK exclusion glob matches (GDK prefixes each glob with the root)."""
    ignored: set[str] = set()
    for pattern in patterns:
        ignored |= set(glob.glob(f"{root}{os.path.sep}{pattern}", recursive=True))
    return ignored


def zip_component(project: ComponentProject, work_dir: Path) -> Path:
    """Copy and zip the component folder as GDK's zip build does; the zip's path."""
    root = project.folder.resolve()
    unwanted = ignored_paths(root, project.ignore_patterns())

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set()
        for name in names:
            full = str(Path(directory) / name)
            if full in unwanted or f"{full}{os.path.sep}" in unwanted:
                skipped.add(name)
        return skipped

    copy = work_dir / root.name
    shutil.copytree(root, copy, ignore=ignore)
    archive = shutil.make_archive(str(work_dir / project.zip_name), "zip", root_dir=copy)
    return Path(archive)


def read_recipe(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    import yaml

    return yaml.safe_load(text)


def write_recipe(path: Path, recipe: Mapping[str, Any]) -> None:
    if path.suffix == ".json":
        path.write_text(json.dumps(recipe, indent=4), encoding="utf-8")
        return
    import yaml

    with path.open("w", encoding="utf-8") as f:
        yaml.safe_dump(dict(recipe), f, sort_keys=False)


def set_recipe_value(mapping: dict[str, Any], key: str, value: Any) -> None:
    """Set a recipe key case-insensitively, keeping the recipe's own spelling (as GDK does)."""
    for existing in mapping:
        if existing.lower() == key.lower():
            mapping[existing] = value
            return
    mapping[key] = value


def recipe_value(mapping: Mapping[str, Any], key: str) -> Any:
    """A recipe key's value, case-insensitively (as GDK and the nucleus read recipes)."""
    for existing, value in mapping.items():
        if existing.lower() == key.lower():
            return value
    return None


def transform_recipe(recipe: dict[str, Any], project: ComponentProject,
                     built_files: Mapping[str, Path], artifacts_dir: Path) -> dict[str, Any]:
    set_recipe_value(recipe, "ComponentName", project.name)
    set_recipe_value(recipe, "ComponentVersion", project.version)
    set_recipe_value(recipe, "ComponentPublisher", project.author)
    for manifest in recipe_value(recipe, "Manifests") or []:
        for artifact in recipe_value(manifest, "Artifacts") or []:
            uri = recipe_value(artifact, "URI")
            if not isinstance(uri, str) or not uri.startswith(S3_PREFIX):
                continue
            file_name = Path(uri).name
            built = built_files.get(file_name)
            if built is None:
                raise BuildError(
                    f"{project.recipe_file}: artifact {uri} is not produced by the build; GDK "
                    "would look it up in S3, which this offline build cannot do"
                )
            artifacts_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(built, artifacts_dir)
            set_recipe_value(artifact, "Uri", f"{BUILD_URI_PREFIX}/{file_name}")
    return recipe


def build_component(project: ComponentProject, out_dir: Path) -> tuple[Path, Path]:
    """Build one component into ``out_dir`` (a greengrass-build folder): (recipe, artifacts)."""
    if project.build_system != "zip":
        raise BuildError(f"{project.name}: only GDK's zip build system is supported here")
    artifacts_dir = out_dir / "artifacts" / project.name / project.version
    recipes_dir = out_dir / "recipes"
    if artifacts_dir.exists():
        shutil.rmtree(artifacts_dir)
    recipes_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ggic-zip-build-") as tmp:
        archive = zip_component(project, Path(tmp))
        recipe = transform_recipe(read_recipe(project.recipe_file), project,
                                  {archive.name: archive}, artifacts_dir)
    recipe_out = recipes_dir / project.recipe_file.name
    write_recipe(recipe_out, recipe)
    log.info("built %s %s: %s, %s", project.name, project.version, recipe_out, artifacts_dir)
    return recipe_out, artifacts_dir


def find_projects(repo_root: Path) -> list[ComponentProject]:
    """The repository's component projects: the root and every folder under components/."""
    folders = [repo_root] + sorted(p.parent for p in (repo_root / "components").glob(
        f"*/{CONFIG_FILE}"))
    return [ComponentProject.load(f) for f in folders if (f / CONFIG_FILE).is_file()]


def build_all(repo_root: Path, out_dir: Path | None = None) -> list[tuple[Path, Path]]:
    out = out_dir or repo_root / BUILD_DIR
    return [build_component(project, out) for project in find_projects(repo_root)]
