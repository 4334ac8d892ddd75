"""``ggic build`` reproduces GDK's zip build, and the recipes/configs pass GDK's own schemas."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from ggic.gdk_build import (
    BuildError,
    ComponentProject,
    build_all,
    build_component,
    find_projects,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO.parent / "shared" / "schemas"
COMPONENTS = ("com.custom.ImageClassifier", "com.custom.requester")


def lower_keys(value):
    """What GDK validates: the recipe with every key lower-cased."""
    if isinstance(value, dict):
        return {k.lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gb") / "greengrass-build"
    build_all(REPO, out)
    return out


def zip_names(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as z:
        return {n for n in z.namelist() if not n.endswith("/")}


def test_layout_is_gdks(built):
    for name in COMPONENTS:
        assert (built / "recipes" / f"{name}.yaml").is_file()
        assert (built / "artifacts" / name / "1.0.0" / "ggic.zip").is_file()


def test_recipes_get_name_version_publisher_and_build_uris(built):
    for name in COMPONENTS:
        recipe = yaml.safe_load((built / "recipes" / f"{name}.yaml").read_text())
        assert recipe["ComponentName"] == name
        assert recipe["ComponentVersion"] == "1.0.0"
        assert recipe["ComponentPublisher"] == "ggic"
        uris = {a["URI"] for m in recipe["Manifests"] for a in m["Artifacts"]}
        assert uris == {"s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/ggic.zip"}


def test_classifier_zip_holds_the_package_and_nothing_else(built):
    names = zip_names(built / "artifacts" / COMPONENTS[0] / "1.0.0" / "ggic.zip")
    for needed in ("pyproject.toml", "README.md", "scripts/component-install.sh",
                   "components/ggic/__init__.py", "components/ggic/classifier/service.py"):
        assert needed in names
    for name in names:
        assert not name.startswith(("tests/", ".git", "recipes/", "components/requester/",
                                    "greengrass-build/")), name
        assert "__pycache__" not in name and not name.endswith(".pyc"), name
    assert "gdk-config.json" not in names and "recipe.yaml" not in names


def test_requester_zip_follows_its_links_to_the_shared_package(built):
    classifier = zip_names(built / "artifacts" / COMPONENTS[0] / "1.0.0" / "ggic.zip")
    requester = zip_names(built / "artifacts" / COMPONENTS[1] / "1.0.0" / "ggic.zip")
    package = {n for n in classifier if n.startswith("components/ggic/")}
    assert package <= requester
    assert "pyproject.toml" in requester and "scripts/component-install.sh" in requester
    assert "gdk-config.json" not in requester and "recipe.yaml" not in requester


def test_artifact_is_a_pip_installable_project(built, tmp_path):
    with zipfile.ZipFile(built / "artifacts" / COMPONENTS[1] / "1.0.0" / "ggic.zip") as z:
        z.extractall(tmp_path / "ggic")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "wheels"), str(tmp_path / "ggic")],
        check=True, capture_output=True,
    )
    (wheel,) = (tmp_path / "wheels").glob("ggic-*.whl")
    names = zip_names(wheel)
    assert "ggic/classifier/service.py" in names and "ggic/requester/service.py" in names


@pytest.mark.skipif(not SCHEMAS.is_dir(), reason="GDK's schemas are in ../shared/schemas")
def test_recipes_and_configs_pass_gdks_schemas(built):
    jsonschema = pytest.importorskip("jsonschema")
    recipe_schema = json.loads((SCHEMAS / "recipe_schema.json").read_text())
    config_schema = json.loads((SCHEMAS / "config_schema.json").read_text())
    for name in COMPONENTS:
        for path in (built / "recipes" / f"{name}.yaml",
                     REPO / "recipes" / f"{name}.yaml"):
            jsonschema.validate(lower_keys(yaml.safe_load(path.read_text())), recipe_schema)
    projects = find_projects(REPO)
    assert [p.name for p in projects] == list(COMPONENTS)
    for project in projects:
        config = json.loads((project.folder / "gdk-config.json").read_text())
        jsonschema.validate(config, config_schema)


def test_gdk_rules_on_a_small_project(tmp_path):
    project_dir = tmp_path / "hello"
    (project_dir / "src").mkdir(parents=True)
    (project_dir / "src" / "main.py").write_text("print('hi')")
    (project_dir / "src" / "test_main.py").write_text("")
    (project_dir / ".hidden").write_text("")
    (project_dir / "node_modules").mkdir()
    (project_dir / "recipe.json").write_text(json.dumps({
        "RecipeFormatVersion": "2020-01-25", "componentname": "x", "ComponentVersion": "0",
        "Manifests": [{"Artifacts": [{"URI": "s3://b/hello.zip"}]}]}))
    config = {"component": {"com.example.Hello": {
        "author": "me", "version": "NEXT_PATCH",
        "build": {"build_system": "zip"}, "publish": {"bucket": "b"}}}, "gdk_version": "1.6.2"}
    (project_dir / "gdk-config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    recipe_path, artifacts = build_component(ComponentProject.load(project_dir), out)
    # no options: GDK's default exclusions; the zip is named after the folder
    assert zip_names(artifacts / "hello.zip") == {"src/main.py"}
    recipe = json.loads(recipe_path.read_text())
    assert recipe["componentname"] == "com.example.Hello"  # the recipe's own key spelling
    assert recipe["ComponentVersion"] == "NEXT_PATCH"  # passed through literally
    assert recipe["ComponentPublisher"] == "me"
    assert recipe["Manifests"][0]["Artifacts"][0]["URI"].endswith("COMPONENT_VERSION/hello.zip")
    # zip_name "" -> the component's name; an artifact the build does not make -> error
    config["component"]["com.example.Hello"]["build"]["options"] = {"zip_name": ""}
    (project_dir / "gdk-config.json").write_text(json.dumps(config))
    with pytest.raises(BuildError, match="not produced by the build"):
        build_component(ComponentProject.load(project_dir), out)
