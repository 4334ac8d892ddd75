"""Local deployments: dependency closure, versions, order, files, configuration, changes."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

import pytest

from ggic.local.config_store import ConfigStore
from ggic.local.deployment import (
    DeploymentError,
    DeploymentRequest,
    LocalDeployer,
    parse_merge_arguments,
    parse_remove_arguments,
    parse_update_config,
)
from ggic.local.lifecycle import RunnerSettings, State, Supervisor

LINUX = {"os": "linux", "architecture": "amd64"}
APP = "com.example.App"
MODEL = "variant.Example.ModelStore"


def recipe(name: str, version: str, *, deps: dict | None = None, defaults: dict | None = None,
           lifecycle: dict | None = None, artifacts: list | None = None,
           platform: dict | None = None) -> dict:
    manifest: dict = {"Platform": platform or {"os": "linux"},
                      "Lifecycle": lifecycle or {"Run": "true"}}
    if artifacts:
        manifest["Artifacts"] = artifacts
    doc: dict = {"RecipeFormatVersion": "2020-01-25", "ComponentName": name,
                 "ComponentVersion": version, "Manifests": [manifest]}
    if deps:
        doc["ComponentDependencies"] = {
            n: {"VersionRequirement": r} if isinstance(r, str) else r for n, r in deps.items()}
    if defaults is not None:
        doc["ComponentConfiguration"] = {"DefaultConfiguration": defaults}
    return doc


def write_recipe(folder: Path, doc: dict, file_name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (file_name or f"{doc['ComponentName']}-{doc['ComponentVersion']}.json")
    path.write_text(json.dumps(doc))
    return path


def make_zip(path: Path, files: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def model_stand_in(tmp_path: Path, version: str = "2.1.9", unpacked: bool = False) -> Path:
    folder = tmp_path / f"stand-in-{version}"
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(f"""\
RecipeFormatVersion: '2020-01-25'
ComponentName: {MODEL}
ComponentVersion: '{version}'
ComponentConfiguration:
  DefaultConfiguration:
    ModelName: resnet50
Manifests:
  - Platform:
      os: linux
      architecture: /amd64|aarch64/
    Lifecycle: {{}}
    Artifacts:
      - URI: s3://public-bucket/models/resnet50.zip
        Unarchive: ZIP
        Permission:
          Read: ALL
""")
    if unpacked:
        (folder / "resnet50").mkdir()
        (folder / "resnet50" / "synset.txt").write_text("unpacked labels\n")
    else:
        make_zip(folder / "resnet50.zip", {"synset.txt": f"labels {version}\n"})
    return folder


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Path]:
    """A recipe folder with the app, its artifacts, and a ModelStore stand-in."""
    recipes, artifacts = tmp_path / "recipes", tmp_path / "artifacts"
    write_recipe(recipes, recipe(
        APP, "1.0.0",
        deps={MODEL: {"VersionRequirement": ">=2.1.0 <2.2.0", "DependencyType": "HARD"}},
        defaults={"Message": "hello", "TopK": "5", "Nested": {"A": "1", "B": "2"}},
        lifecycle={
            "Setenv": {"MODEL_DIR": f"{{{MODEL}:artifacts:decompressedPath}}/resnet50"},
            "Install": {"Script": "python3 {artifacts:path}/app.py --install", "Timeout": 5},
            "Run": "cat $MODEL_DIR/synset.txt; echo '{configuration:/Message}' "
                   f"'{{{MODEL}:configuration:/ModelName}}' {{iot:thingName}}",
        },
        artifacts=[{"URI": "s3://bucket/app/app.py"},
                   {"URI": "s3://bucket/app/tool.sh", "Permission": {"Execute": "ALL"}}],
    ), "app-recipe.json")
    app_artifacts = artifacts / APP / "1.0.0"
    app_artifacts.mkdir(parents=True)
    (app_artifacts / "app.py").write_text("print('app')\n")
    (app_artifacts / "tool.sh").write_text("#!/bin/sh\n")
    return {"recipes": recipes, "artifacts": artifacts, "stand_in": model_stand_in(tmp_path),
            "root": tmp_path / "gg"}


def deploy(project: dict[str, Path], **changes) -> tuple[LocalDeployer, object]:
    request = DeploymentRequest(recipe_dir=project["recipes"], artifact_dir=project["artifacts"],
                                merge={APP: "1.0.0"}, stand_ins=[project["stand_in"]])
    fields = {**request.__dict__, **changes}
    deployer = LocalDeployer(project["root"], platform=LINUX, thing_name="TestThing")
    return deployer, deployer.deploy(DeploymentRequest(**fields))


def test_deployment_lays_files_out_like_the_nucleus(project: dict[str, Path]) -> None:
    deployer, plan = deploy(project)
    root = project["root"].absolute()
    assert plan.names == [MODEL, APP]  # dependencies first
    assert plan.root_components == {APP: "1.0.0"}
    app = plan.component(APP)
    assert app.version == "1.0.0" and app.is_root and app.change == "new"
    assert plan.component(MODEL).version == "2.1.9" and not plan.component(MODEL).is_root

    artifacts = root / "packages" / "artifacts" / APP / "1.0.0"
    assert (artifacts / "app.py").read_text() == "print('app')\n"
    assert stat.S_IMODE((artifacts / "app.py").stat().st_mode) == 0o400  # Read OWNER default
    assert stat.S_IMODE((artifacts / "tool.sh").stat().st_mode) == 0o555  # Execute ALL
    unpacked = root / "packages" / "artifacts-unarchived" / MODEL / "2.1.9" / "resnet50"
    assert (unpacked / "synset.txt").read_text() == "labels 2.1.9\n"
    assert stat.S_IMODE((unpacked / "synset.txt").stat().st_mode) == 0o444  # Read ALL
    assert (root / "packages" / "artifacts" / MODEL / "2.1.9" / "resnet50.zip").is_file()
    assert (root / "work" / APP).is_dir() and (root / "work" / MODEL).is_dir()
    assert sorted(p.name for p in (root / "packages" / "recipes").iterdir()) == [
        f"{APP}-1.0.0.json", f"{MODEL}-2.1.9.yaml"]

    lifecycle = app.lifecycle
    assert lifecycle.setenv == {"MODEL_DIR": str(unpacked)}
    assert lifecycle.step("Install").script == f"python3 {artifacts}/app.py --install"
    assert lifecycle.step("Run").script.endswith("echo 'hello' 'resnet50' TestThing")
    spec = app.spec()
    assert spec.dependencies == {MODEL: "HARD"} and spec.work_dir == root / "work" / APP


def test_a_stand_in_may_give_a_zip_already_unpacked(tmp_path: Path, project) -> None:
    project["stand_in"] = model_stand_in(tmp_path, "2.1.5", unpacked=True)
    _, plan = deploy(project)
    unpacked = project["root"] / "packages" / "artifacts-unarchived" / MODEL / "2.1.5"
    assert (unpacked / "resnet50" / "synset.txt").read_text() == "unpacked labels\n"


def test_the_deployed_components_run_with_their_interpolated_lifecycles(project) -> None:
    _, plan = deploy(project, update_config={APP: parse_update_config(
        {APP: {"MERGE": {"Message": "merged"}}})[APP]})
    supervisor = Supervisor(plan.component_specs(), project["root"],
                            settings=RunnerSettings(grace_period=0.5))
    supervisor.start_all()
    try:
        assert supervisor.wait_for_state(APP, State.FINISHED, 10)
    finally:
        supervisor.close(10)
    log = (project["root"] / "logs" / f"{APP}.log").read_text()
    assert "stdout. labels 2.1.9." in log
    assert "stdout. merged resnet50 TestThing." in log


def test_versions_pick_the_highest_fitting_and_keep_the_deployed_one(tmp_path, project) -> None:
    newer = model_stand_in(tmp_path, "2.1.12")
    too_new = model_stand_in(tmp_path, "2.2.0")
    _, plan = deploy(project, stand_ins=[project["stand_in"], newer, too_new])
    assert plan.component(MODEL).version == "2.1.12"  # 2.1.9 < 2.1.12; 2.2.0 doesn't fit
    # an even newer fitting version appears: the deployed one is kept, as the nucleus does
    _, plan = deploy(project, stand_ins=[model_stand_in(tmp_path, "2.1.20"), newer])
    assert plan.component(MODEL).version == "2.1.12"


def test_unmet_version_requirement_names_both_components(tmp_path, project) -> None:
    with pytest.raises(DeploymentError, match=rf"no version of {MODEL} satisfies "
                                              rf">=2.1.0 <2.2.0 \(from {APP}\)") as info:
        deploy(project, stand_ins=[model_stand_in(tmp_path, "3.0.0")])
    assert "available: 3.0.0" in str(info.value)


def test_a_root_pinned_below_a_requirement_is_an_error(tmp_path, project) -> None:
    model_root = model_stand_in(tmp_path, "2.0.0")
    with pytest.raises(DeploymentError, match=rf"{MODEL} 2.0.0 \(root component\) does not "
                                              rf"satisfy {APP}'s requirement"):
        deploy(project, stand_ins=[model_root], merge={APP: "1.0.0", MODEL: "2.0.0"})


def test_a_missing_dependency_suggests_a_stand_in(project) -> None:
    with pytest.raises(DeploymentError, match=rf"{MODEL}, needed by {APP}: no recipe.*stand-in"):
        deploy(project, stand_ins=[])


def test_dependency_cycles_are_reported(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    write_recipe(recipes, recipe("a", "1.0.0", deps={"b": "^1.0.0"}))
    write_recipe(recipes, recipe("b", "1.0.0", deps={"c": "^1.0.0"}))
    write_recipe(recipes, recipe("c", "1.0.0", deps={"a": "^1.0.0"}))
    deployer = LocalDeployer(tmp_path / "gg", platform=LINUX)
    with pytest.raises(DeploymentError, match="cycle: a -> b -> c -> a"):
        deployer.plan(DeploymentRequest(recipe_dir=recipes, merge={"a": "1.0.0"}))


def test_order_is_dependencies_first(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    write_recipe(recipes, recipe("top", "1.0.0", deps={"mid": "^1.0.0", "base": "*"}))
    write_recipe(recipes, recipe("mid", "1.2.0", deps={"base": "~1.0.0"}))
    write_recipe(recipes, recipe("base", "1.0.3"))
    write_recipe(recipes, recipe("other", "0.1.0"))
    deployer = LocalDeployer(tmp_path / "gg", platform=LINUX)
    plan = deployer.plan(DeploymentRequest(recipe_dir=recipes,
                                           merge={"top": "1.0.0", "other": "0.1.0"}))
    assert plan.names == ["base", "mid", "other", "top"]


def test_the_nucleus_is_built_in(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    write_recipe(recipes, recipe("app", "1.0.0", deps={
        "aws.greengrass.Nucleus": {"VersionRequirement": ">=2.0.0 <3.0.0",
                                   "DependencyType": "SOFT"}}))
    plan = LocalDeployer(tmp_path / "gg", platform=LINUX).plan(
        DeploymentRequest(recipe_dir=recipes, merge={"app": "1.0.0"}))
    nucleus = plan.component("aws.greengrass.Nucleus")
    assert nucleus.builtin and nucleus.spec().builtin
    assert plan.names == ["aws.greengrass.Nucleus", "app"]


def test_configuration_merge_and_reset_across_deployments(project, tmp_path) -> None:
    def config(plan):
        return plan.component(APP).configuration

    _, plan = deploy(project, update_config=parse_update_config(json.dumps(
        {APP: {"MERGE": {"topk": "3", "Nested": {"B": "20", "C": "30"}, "Extra": [1, 2]}}})))
    assert config(plan) == {"Message": "hello", "TopK": "3", "Nested": {"A": "1", "B": "20",
                                                                        "C": "30"},
                            "Extra": [1, 2]}  # keys match case-insensitively, keep their case
    _, plan = deploy(project)  # no update: the merged values persist
    assert config(plan)["TopK"] == "3" and config(plan)["Nested"]["B"] == "20"

    # a new version with new defaults: merged values stay, defaults follow the recipe
    write_recipe(project["recipes"], recipe(
        APP, "1.1.0", deps={MODEL: "^2.1.0"},
        defaults={"Message": "hi v1.1", "TopK": "10", "Nested": {"A": "100", "B": "2"}}))
    _, plan = deploy(project, merge={APP: "1.1.0"})
    assert config(plan) == {"Message": "hi v1.1", "TopK": "3",
                            "Nested": {"A": "100", "B": "20", "C": "30"}, "Extra": [1, 2]}

    updates = parse_update_config({APP: {"RESET": ["/TopK", "/Nested/B", "/Extra/0"],
                                         "MERGE": {"Message": "after reset"}}})
    _, plan = deploy(project, merge={APP: "1.1.0"}, update_config=updates)
    assert config(plan) == {"Message": "after reset", "TopK": "10",
                            "Nested": {"A": "100", "B": "2", "C": "30"},
                            "Extra": [1, 2]}  # list elements can't be reset (nucleus)

    deployer, plan = deploy(project, merge={APP: "1.1.0"},
                            update_config=parse_update_config({APP: {"RESET": [""]}}))
    assert config(plan) == {"Message": "hi v1.1", "TopK": "10", "Nested": {"A": "100", "B": "2"}}
    stored = ConfigStore.load(project["root"] / "config" / "configuration.json")
    assert stored.to_dict(APP) == config(plan)


def test_runtime_updates_win_over_defaults(project) -> None:
    deployer, _ = deploy(project)
    deployer.configuration.update(APP, ["Nested"], {"A": "from IPC"})
    _, plan = deploy(project)
    assert plan.component(APP).configuration["Nested"] == {"A": "from IPC", "B": "2"}


@pytest.mark.parametrize("update, words", [
    ({MODEL: {"MERGE": {"x": 1}}}, "only applies configuration updates to root components"),
    ({"com.example.Nope": {"MERGE": {}}}, "not in the deployment"),
])
def test_configuration_updates_must_target_root_components(project, update, words) -> None:
    with pytest.raises(DeploymentError, match=words):
        deploy(project, update_config=parse_update_config(update))


@pytest.mark.parametrize("value, words", [
    ('{"a": {"merge": {}}}', "upper case"),
    ('{"a": {"RESET": "/x"}}', "list of JSON pointers"),
    ('{"a": {"RESET": ["x"]}}', "not a JSON pointer"),
    ('{"a": {"MERGE": [1]}}', "must be an object"),
    ("{not json", "not JSON"),
    ("/no/such/file.json", "can't read"),
])
def test_update_config_syntax_errors(value: str, words: str) -> None:
    with pytest.raises(DeploymentError, match=words):
        parse_update_config(value)


def test_update_config_from_a_file_and_merge_as_json_string(tmp_path: Path) -> None:
    path = tmp_path / "update.json"
    path.write_text(json.dumps({"a": {"MERGE": json.dumps({"k": "v"}), "RESET": ["/x"]}}))
    update = parse_update_config(path)["a"]
    assert (dict(update.merge), update.reset) == ({"k": "v"}, ("/x",))
    assert parse_update_config(str(path))["a"] == update


def test_merge_and_remove_arguments() -> None:
    assert parse_merge_arguments(["a=1.0.0", "b = 2.1.0"]) == {"a": "1.0.0", "b": "2.1.0"}
    assert parse_remove_arguments(["a,b", " c "]) == ["a", "b", "c"]
    for bad in ("a", "a=", "=1.0.0", "a=1.0"):
        with pytest.raises(DeploymentError):
            parse_merge_arguments([bad])


def test_remove_keeps_what_others_still_need(project, tmp_path) -> None:
    write_recipe(project["recipes"], recipe("com.example.Solo", "1.0.0", defaults={"k": "v"}))
    deploy(project, merge={APP: "1.0.0", "com.example.Solo": "1.0.0", MODEL: "2.1.9"})
    deployer, plan = deploy(project, merge={}, remove=["com.example.Solo", MODEL])
    assert plan.removed == ("com.example.Solo",)
    assert plan.names == [MODEL, APP]  # still a dependency of the app
    assert plan.root_components == {APP: "1.0.0"}
    assert not deployer.configuration.has("com.example.Solo")


def test_a_later_deployment_reuses_the_component_store(project) -> None:
    deploy(project)
    # no recipe folder, no stand-in: everything comes from <root>/packages
    deployer = LocalDeployer(project["root"], platform=LINUX, thing_name="TestThing")
    plan = deployer.deploy(DeploymentRequest())
    assert plan.names == [MODEL, APP]
    assert {c.change for c in plan.components} == {"unchanged"}


def test_changes_against_the_previous_deployment(project) -> None:
    deploy(project)
    _, plan = deploy(project)
    assert [c.change for c in plan.components] == ["unchanged", "unchanged"]
    app_py = project["artifacts"] / APP / "1.0.0" / "app.py"
    app_py.write_text("print('changed')\n")
    _, plan = deploy(project)
    assert plan.component(APP).change == "reinstall"
    assert plan.needs_reinstall() == [APP]
    installed = project["root"] / "packages" / "artifacts" / APP / "1.0.0" / "app.py"
    assert installed.read_text() == "print('changed')\n"  # re-copied over a read-only file
    doc = json.loads((project["recipes"] / "app-recipe.json").read_text())
    doc["Manifests"][0]["Lifecycle"]["Run"] = "echo different"
    (project["recipes"] / "app-recipe.json").write_text(json.dumps(doc))
    _, plan = deploy(project)
    assert plan.component(APP).change == "restart"


def test_no_manifest_for_this_platform(project) -> None:
    deployer = LocalDeployer(project["root"], platform={"os": "linux", "architecture": "arm"})
    with pytest.raises(DeploymentError, match=f"no manifest of {MODEL} 2.1.9 matches"):
        deployer.plan(DeploymentRequest(recipe_dir=project["recipes"],
                                        artifact_dir=project["artifacts"], merge={APP: "1.0.0"},
                                        stand_ins=[project["stand_in"]]))


def test_missing_artifact_says_where_it_looked(project) -> None:
    os.remove(project["artifacts"] / APP / "1.0.0" / "tool.sh")
    with pytest.raises(DeploymentError, match=r"artifact tool.sh of com.example.App 1.0.0 not "
                                              r"found \(looked in .*artifacts/com.example.App"):
        deploy(project)


def test_a_recipe_defined_twice_is_refused(project) -> None:
    doc = json.loads((project["recipes"] / "app-recipe.json").read_text())
    write_recipe(project["recipes"], doc, "copy.yaml")
    with pytest.raises(DeploymentError, match=f"{APP} 1.0.0 is defined twice"):
        deploy(project)


def test_references_to_non_dependencies_fail_the_deployment(project) -> None:
    write_recipe(project["recipes"], recipe("com.example.Solo", "1.0.0"))
    write_recipe(project["recipes"], recipe(
        "com.example.Nosy", "1.0.0", lifecycle={"Run": "ls {com.example.Solo:work:path}"}))
    with pytest.raises(DeploymentError, match="com.example.Nosy: recipe variable .* refers to "
                                              "com.example.Solo, which is not a direct dep"):
        deploy(project, merge={"com.example.Nosy": "1.0.0", "com.example.Solo": "1.0.0"})


def test_zip_entries_may_not_escape_their_folder(project) -> None:
    stand_in = project["stand_in"]
    make_zip(stand_in / "resnet50.zip", {"../../escaped.txt": "x"})
    with pytest.raises(DeploymentError, match="outside its folder"):
        deploy(project)


def test_malformed_recipe_in_the_folder_names_the_file(project) -> None:
    (project["recipes"] / "broken.yaml").write_text("ComponentName: x\n")
    with pytest.raises(DeploymentError, match=r"broken.yaml: RecipeFormatVersion"):
        deploy(project)


def test_the_whole_artifact_folder_is_laid_out_and_counts_for_reinstall(project) -> None:
    extra = project["artifacts"] / APP / "1.0.0" / "extra" / "notes.txt"
    extra.parent.mkdir()
    extra.write_text("v1")
    deploy(project)
    laid_out = project["root"] / "packages" / "artifacts" / APP / "1.0.0" / "extra" / "notes.txt"
    assert laid_out.read_text() == "v1"
    # from the component store alone, the laid-out copy counts as the same files
    store_only = LocalDeployer(project["root"], platform=LINUX, thing_name="TestThing")
    assert store_only.plan(DeploymentRequest()).component(APP).change == "unchanged"
    extra.write_text("v2")
    _, plan = deploy(project)
    assert plan.component(APP).change == "reinstall"
    assert laid_out.read_text() == "v2"
