"""Where a deployment's recipes come from: the recipe folder, stand-in folders (public
components that can't exist locally, such as ``variant.DLR.ImageClassification.ModelStore``)
and the component store (``<root>/packages/recipes``), by name and version.

A stand-in is a folder holding a recipe (``recipe.yaml``/``.json``, or any recipe files) and its
artifacts beside it, in ``artifacts/``, or in ``artifacts/<name>/<version>/``; or a folder with
``recipes/`` and ``artifacts/<name>/<version>/`` (GDK's build output).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..semver import Version
from .deployment_request import DeploymentError
from .recipe import RECIPE_SUFFIXES, Recipe, load_recipe


@dataclass(frozen=True)
class RecipeSource:
    recipe: Recipe
    kind: str  # "recipe-dir", "stand-in" or "store"
    artifact_dirs: tuple[Path, ...] = ()  # folders holding the artifact files themselves

    @property
    def path(self) -> Path:
        return Path(self.recipe.source)


def recipe_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in RECIPE_SUFFIXES)


def scan_recipe_dir(folder: Path) -> list[Recipe]:
    """Every recipe in a folder (``.yaml``, ``.yml``, ``.json``; file names don't matter)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DeploymentError(f"recipe folder {folder} does not exist")
    return [load_recipe(path) for path in recipe_files(folder)]


def load_stand_in(folder: Path) -> list[RecipeSource]:
    """The recipe(s) and artifact folders of a stand-in folder (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DeploymentError(f"stand-in {folder} is not a folder")
    if (folder / "recipes").is_dir():
        return [RecipeSource(r, "stand-in",
                             (folder / "artifacts" / r.name / r.version,))
                for r in scan_recipe_dir(folder / "recipes")]
    named = [folder / f"recipe{suffix}" for suffix in RECIPE_SUFFIXES]
    files = [p for p in named if p.is_file()] or recipe_files(folder)
    if not files:
        raise DeploymentError(f"stand-in {folder} has no recipe (recipe.yaml or recipe.json)")
    sources = []
    for path in files:
        recipe = load_recipe(path)
        sources.append(RecipeSource(recipe, "stand-in", (
            folder / "artifacts" / recipe.name / recipe.version, folder / "artifacts", folder)))
    return sources


class ComponentCatalog:
    """Every recipe a deployment may use, by name and version."""

    def __init__(self) -> None:
        self._sources: dict[str, dict[str, RecipeSource]] = {}

    def add(self, source: RecipeSource) -> None:
        recipe = source.recipe
        versions = self._sources.setdefault(recipe.name, {})
        existing = versions.get(recipe.version)
        if existing is not None and existing.kind != "store" and existing.path != source.path:
            raise DeploymentError(
                f"{recipe.name} {recipe.version} is defined twice: {existing.path} and "
                f"{source.path}")
        if existing is None or existing.kind == "store" or source.kind != "store":
            versions[recipe.version] = source

    def versions(self, name: str) -> list[str]:
        return sorted(self._sources.get(name, {}), key=Version.parse, reverse=True)

    def get(self, name: str, version: str) -> RecipeSource | None:
        return self._sources.get(name, {}).get(version)
