"""Recipe loading: YAML and JSON, case-insensitive keys, typed lifecycle, clear errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ggic.local.recipe import (
    RecipeError,
    effective_lifecycle,
    load_recipe,
    parse_lifecycle,
    parse_recipe,
)

REPO = Path(__file__).resolve().parents[1]

YAML_RECIPE = """\
---
RecipeFormatVersion: 2020-01-25
ComponentName: com.example.Hello
ComponentVersion: '1.2.3'
ComponentPublisher: me
ComponentDependencies:
  com.example.Dep:
    VersionRequirement: ^2.0.0
    DependencyType: SOFT
  com.example.Other:
    VersionRequirement: '>=1.0.0 <1.1.0'
ComponentConfiguration:
  DefaultConfiguration:
    Message: world
    Nested: {Port: '8080'}
Manifests:
  - Platform:
      os: linux
    Lifecycle:
      Setenv:
        GREETING: hi
      Install:
        Script: echo install
        Timeout: 30
        RequiresPrivilege: true
        Skipif: onpath git
      Run: python3 {artifacts:path}/hello.py '{configuration:/Message}'
    Artifacts:
      - URI: s3://bucket/path/hello.zip
        Unarchive: ZIP
        Permission:
          Read: ALL
          Execute: OWNER
      - URI: s3://bucket/path/hello.py
"""


def _json_variant() -> str:
    """The same recipe in JSON with every recipe key in a different case."""
    return json.dumps({
        "recipeformatversion": "2020-01-25",
        "COMPONENTNAME": "com.example.Hello",
        "componentVersion": "1.2.3",
        "componentdependencies": {
            "com.example.Dep": {"versionrequirement": "^2.0.0", "DEPENDENCYTYPE": "SOFT"},
            "com.example.Other": {"VersionRequirement": ">=1.0.0 <1.1.0"},
        },
        "componentConfiguration": {"defaultConfiguration": {
            "Message": "world", "Nested": {"Port": "8080"}}},
        "manifests": [{
            "platform": {"os": "linux"},
            "lifecycle": {
                "setenv": {"GREETING": "hi"},
                "install": {"script": "echo install", "TIMEOUT": 30,
                            "requiresprivilege": True, "SkipIf": "onpath git"},
                "RUN": "python3 {artifacts:path}/hello.py '{configuration:/Message}'",
            },
            "artifacts": [
                {"uri": "s3://bucket/path/hello.zip", "unarchive": "ZIP",
                 "permission": {"read": "ALL", "execute": "OWNER"}},
                {"Uri": "s3://bucket/path/hello.py"},
            ],
        }],
    })


@pytest.mark.parametrize("text, fmt", [(YAML_RECIPE, "yaml"), (_json_variant(), "json"),
                                        (_json_variant(), None)])
def test_yaml_and_json_with_any_key_case_give_the_same_recipe(text: str, fmt: str | None) -> None:
    recipe = parse_recipe(text, "r", fmt)

    assert recipe.format_version == "2020-01-25"  # unquoted YAML date stays a string
    assert (recipe.name, recipe.version) == ("com.example.Hello", "1.2.3")
    assert recipe.dependencies["com.example.Dep"].dependency_type == "SOFT"
    assert recipe.dependencies["com.example.Other"].dependency_type == "HARD"
    assert recipe.dependencies["com.example.Dep"].version_requirement.matches("2.5.0")
    assert recipe.default_configuration == {"Message": "world", "Nested": {"Port": "8080"}}
    manifest = recipe.manifests[0]
    assert manifest.platform == {"os": "linux"}
    zip_artifact, py_artifact = manifest.artifacts
    assert (zip_artifact.file_name, zip_artifact.unarchive) == ("hello.zip", "ZIP")
    assert (zip_artifact.permission.read, zip_artifact.permission.execute) == ("ALL", "OWNER")
    assert zip_artifact.unarchive_dir_name == "hello"
    assert (py_artifact.unarchive, py_artifact.permission.read) == ("NONE", "OWNER")

    lifecycle = parse_lifecycle(effective_lifecycle(recipe, manifest))
    assert lifecycle.setenv == {"GREETING": "hi"}
    install = lifecycle.step("Install")
    assert (install.script, install.timeout, install.requires_privilege, install.skipif) == \
           ("echo install", 30.0, True, "onpath git")
    assert install.script_name("c") == "services.c.lifecycle.Install.Script"
    run = lifecycle.step("Run")
    assert run.script.startswith("python3 {artifacts:path}/hello.py")
    assert run.script_name("c") == "services.c.lifecycle.Run"
    assert (run.effective_timeout, install.effective_timeout) == (None, 30.0)


def test_load_recipe_reads_the_projects_own_recipes() -> None:
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        assert recipe.name == path.stem
        assert recipe.manifests


def test_default_step_timeouts_follow_the_nucleus() -> None:
    lifecycle = parse_lifecycle({"Install": "a", "Startup": "b", "Shutdown": "c",
                                 "Recover": "d", "Bootstrap": "e"})
    timeouts = {name: step.effective_timeout for name, step in lifecycle.steps.items()}
    assert timeouts == {"Install": 120, "Startup": 120, "Shutdown": 15, "Recover": 60,
                        "Bootstrap": 120}


def test_unknown_lifecycle_keys_are_warned_about_and_ignored(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        lifecycle = parse_lifecycle({"Start": "x", "Run": {"Script": "y", "Scirpt": "z"}})
    assert set(lifecycle.steps) == {"Run"}
    assert "Start" in caplog.text and "Scirpt" in caplog.text


def _recipe(**changes: object) -> dict:
    doc = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.X",
        "ComponentVersion": "1.0.0",
        "Manifests": [{"Lifecycle": {"Run": "true"}}],
    }
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


@pytest.mark.parametrize("changes, key, words", [
    ({"ComponentName": None}, "ComponentName", "required"),
    ({"ComponentName": "bad name!"}, "ComponentName", "letters"),
    ({"ComponentVersion": "1.0"}, "ComponentVersion", "semantic version"),
    ({"ComponentVersion": 1.0}, "ComponentVersion", "string"),
    ({"RecipeFormatVersion": "2021-01-01"}, "RecipeFormatVersion", "2020-01-25"),
    ({"Manifests": None}, "Manifests", "at least one"),
    ({"Manifests": [{"Lifecycle": {"Run": {"Timeout": 3}}}]},
     "Manifests[0].Lifecycle.Run", "Script"),
    ({"Manifests": [{"Lifecycle": {"Run": {"Script": "x", "Timeout": "soon"}}}]},
     "Manifests[0].Lifecycle.Run.Timeout", "seconds"),
    ({"Manifests": [{"Lifecycle": {"Run": {"Script": "x", "RequiresPrivilege": "maybe"}}}]},
     "Manifests[0].Lifecycle.Run.RequiresPrivilege", "true or false"),
    ({"Manifests": [{"Lifecycle": {"Run": "x", "run": "y"}}]},
     "Manifests[0].Lifecycle.run", "duplicate"),
    ({"Manifests": [{"Artifacts": [{"URI": "s3://b/x.zip", "Unarchive": "zip"}]}]},
     "Manifests[0].Artifacts[0].Unarchive", "case-sensitive"),
    ({"Manifests": [{"Artifacts": [{"Unarchive": "ZIP"}]}]}, "Manifests[0].Artifacts[0].URI",
     "required"),
    ({"Manifests": [{"Artifacts": [{"URI": "s3://b/x.py"}, {"URI": "s3://c/x.py"}]}]},
     "Manifests[0].Artifacts", "unique"),
    ({"Manifests": [{"Platform": {"os": "/lin(ux/"}}]}, "Manifests[0].Platform.os",
     "regular expression"),
    ({"ComponentDependencies": {"d": {"VersionRequirement": "^1.0.0",
                                      "DependencyType": "hard"}}},
     "ComponentDependencies.d.DependencyType", "HARD"),
    ({"ComponentDependencies": {"d": {"DependencyType": "HARD"}}},
     "ComponentDependencies.d.VersionRequirement", "required"),
    ({"ComponentDependencies": {"d": {"VersionRequirement": "^x.y.z"}}},
     "ComponentDependencies.d.VersionRequirement", "version"),
    ({"componentname": "a", "ComponentName": "b"}, "componentname", "duplicate"),
])
def test_malformed_recipes_raise_errors_naming_file_and_key(changes: dict, key: str,
                                                             words: str) -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe(json.dumps(_recipe(**changes)), "recipes/x.json", "json")
    assert info.value.source == "recipes/x.json"
    assert info.value.key == key
    assert words in str(info.value)
    assert str(info.value).startswith(f"recipes/x.json: {key}: ")


def test_syntax_errors_name_the_file(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("ComponentName: [unclosed\n")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{\"ComponentName\": }")
    for path, words in ((bad_yaml, "invalid YAML"), (bad_json, "invalid JSON")):
        with pytest.raises(RecipeError, match=words) as info:
            load_recipe(path)
        assert info.value.source == str(path)


GLOBAL_LIFECYCLE = {
    "RecipeFormatVersion": "2020-01-25",
    "ComponentName": "com.example.Sel",
    "ComponentVersion": "1.0.0",
    "Manifests": [
        {"Platform": {"os": "linux"}, "Selections": ["linux"]},
        {"Platform": {"os": "darwin"}, "Lifecycle": {"Run": "own"}},
        {"Platform": {"os": "windows"}},
    ],
    "Lifecycle": {
        "linux": {"Install": "apt-get install x", "Run": "run-linux"},
        "all": {
            "Setenv": {"A": "1"},
            "Install": {"Script": {"linux": "never here", "all": "echo generic"}},
            "Run": "run-any",
        },
    },
}


@pytest.mark.parametrize("index, install, run", [
    (0, "apt-get install x", "run-linux"),  # selections pick the linux branch
    (1, None, "own"),  # a manifest lifecycle wins over the global one
    (2, "echo generic", "run-any"),  # no selections: the "all" branches, at every level
])
def test_global_lifecycle_with_selections(index: int, install: str | None, run: str) -> None:
    recipe = parse_recipe(json.dumps(GLOBAL_LIFECYCLE), "sel.json")
    lifecycle = parse_lifecycle(effective_lifecycle(recipe, recipe.manifests[index]))
    assert lifecycle.step("Run").script == run
    assert (lifecycle.step("Install").script if lifecycle.step("Install") else None) == install


def test_keys_beside_selection_keys_are_ignored_as_by_the_nucleus(caplog) -> None:
    doc = dict(GLOBAL_LIFECYCLE, Lifecycle={"Setenv": {"A": "1"}, "all": {"Run": "x"}})
    with caplog.at_level(logging.WARNING):
        recipe = parse_recipe(json.dumps(doc), "sel.json")
        lifecycle = parse_lifecycle(effective_lifecycle(recipe, recipe.manifests[2]))
    assert lifecycle.setenv == {}
    assert lifecycle.step("Run").script == "x"
    assert "ignored" in caplog.text
