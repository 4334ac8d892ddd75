"""Planning and applying a local deployment, as the nucleus does for ``greengrass-cli
deployment create`` (the request is in deployment_request, recipes come from catalog,
artifacts are laid out by artifacts, configuration lives in the one config_store).

Root components persist across deployments (previous roots - removed + merged), as do their
configurations: a component's configuration starts from what it has, loses the RESET paths,
gets the recipe's defaults for anything missing (defaults never override a value set by a
deployment or at runtime, but a new default replaces an old default), then the MERGE.

Planning resolves the dependency closure (versions checked against every requirement;
the version already deployed is kept when it fits, otherwise the highest that does), selects
each recipe's manifest for this platform, orders components (dependencies first), computes
configurations and interpolates lifecycles. Applying lays files out as the nucleus does::

    <root>/packages/recipes/<name>-<version>.yaml
    <root>/packages/artifacts/<name>/<version>/<file>
    <root>/packages/artifacts-unarchived/<name>/<version>/<zip name without .zip>/...
    <root>/work/<name>/
    <root>/config/deployment.json, configuration.json   (what the next deployment starts from)

No processes and no IPC here: :meth:`DeploymentPlan.component_specs` feeds the Supervisor.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..semver import VersionRange
from .artifacts import (
    ArtifactSource,
    artifact_tree,
    copy_artifact_tree,
    find_artifact,
    hash_path,
    hash_unlisted,
    laid_out,
    lay_out_artifacts,
)
from .catalog import ComponentCatalog, RecipeSource, load_stand_in, recipe_files, scan_recipe_dir
from .config_store import ConfigStore, ConfigTree, ConfigurationChange, now_ms
from .deployment_request import (
    ConfigurationUpdate,
    DeploymentError,
    DeploymentRequest,
    parse_merge_arguments,
    parse_remove_arguments,
    parse_update_config,
)
from .interpolation import (
    ComponentPaths,
    ComponentVariables,
    InterpolationContext,
    InterpolationError,
    interpolate,
)
from .lifecycle import ComponentSpec, DependencyCycleError, start_order
from .platform import NoMatchingManifestError, detect_platform, select_manifest
from .private_files import read_json, write_private_json
from .recipe import (
    RECIPE_SUFFIXES,
    ComponentLifecycle,
    Manifest,
    Recipe,
    RecipeError,
    effective_lifecycle,
    load_recipe,
    parse_lifecycle,
)

__all__ = [
    "ConfigurationUpdate", "DeploymentError", "DeploymentPlan", "DeploymentRequest",
    "LocalDeployer", "PlannedComponent", "parse_merge_arguments", "parse_remove_arguments",
    "parse_update_config",
]

logger = logging.getLogger(__name__)

DEFAULT_THING_NAME = "ggic-local-core"
NUCLEUS_COMPONENT = "aws.greengrass.Nucleus"
#: The nucleus version the local runtime claims to be (for VersionRequirements on it).
DEFAULT_NUCLEUS_VERSION = "2.12.0"
DEPLOYMENT_FILE = "deployment.json"
CONFIGURATION_FILE = "configuration.json"


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedComponent:
    name: str
    version: str
    recipe: Recipe | None  # None for a built-in (the nucleus itself)
    manifest: Manifest | None
    is_root: bool
    dependencies: Mapping[str, str]  # direct dependencies: name -> HARD or SOFT
    configuration: Mapping[str, Any]
    paths: ComponentPaths
    lifecycle: ComponentLifecycle
    lifecycle_raw: Mapping[str, Any]  # interpolated, as written (kept for the next deployment)
    artifacts: tuple[ArtifactSource, ...] = ()
    artifact_tree: Path | None = None
    """``--artifactDir/<name>/<version>/``, copied whole into packages/artifacts."""
    artifacts_digest: str = ""
    source_kind: str = "store"
    builtin: bool = False
    run_bootstrap: bool = False
    change: str = "new"  # new, reinstall, restart or unchanged (against the last deployment)
    posix_user: str | None = None  # runWith.posixUser, this deployment's or kept from the last

    def spec(self) -> ComponentSpec:
        return ComponentSpec(name=self.name, lifecycle=self.lifecycle, work_dir=self.paths.work,
                             version=self.version, dependencies=dict(self.dependencies),
                             run_bootstrap=self.run_bootstrap, builtin=self.builtin,
                             posix_user=self.posix_user,
                             artifact_dirs=(self.paths.artifacts, self.paths.decompressed))


@dataclass(frozen=True)
class DeploymentPlan:
    deployment_id: str
    timestamp: int
    components: tuple[PlannedComponent, ...]  # dependencies first
    root_components: Mapping[str, str]
    removed: tuple[str, ...]
    configuration_changes: tuple[ConfigurationChange, ...] = ()
    """What the deployment writes into the configuration store when applied."""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.components]

    def component(self, name: str) -> PlannedComponent:
        for planned in self.components:
            if planned.name == name:
                return planned
        raise KeyError(f"{name} is not in the deployment")

    def component_specs(self) -> list[ComponentSpec]:
        return [c.spec() for c in self.components]

    def needs_reinstall(self) -> list[str]:
        return [c.name for c in self.components if c.change == "reinstall"]


# --- planning and applying --------------------------------------------------------------------


class LocalDeployer:
    """Plans and applies local deployments under one Greengrass root folder."""

    def __init__(self, root: Path, *, platform: Mapping[str, str] | None = None,
                 thing_name: str = DEFAULT_THING_NAME,
                 builtins: Mapping[str, str] | None = None,
                 configuration: ConfigStore | None = None) -> None:
        self.root = Path(root).absolute()
        self.platform = dict(platform) if platform is not None else detect_platform()
        self.thing_name = thing_name
        self.builtins = dict(builtins) if builtins is not None else {
            NUCLEUS_COMPONENT: DEFAULT_NUCLEUS_VERSION}
        self._state = self._load_state()
        self.configuration = configuration if configuration is not None else \
            ConfigStore.load(self.config_dir / CONFIGURATION_FILE)
        """The one configuration store (the runtime shares it with the IPC operations)."""

    # paths and persisted state

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def recipe_store(self) -> Path:
        return self.root / "packages" / "recipes"

    def paths(self, name: str, version: str) -> ComponentPaths:
        return ComponentPaths.under(self.root, name, version)

    def _load_state(self) -> dict[str, Any]:
        path = self.config_dir / DEPLOYMENT_FILE
        if not path.exists():
            return {"rootComponents": {}, "services": {}}
        return read_json(path)

    @property
    def root_components(self) -> dict[str, str]:
        return dict(self._state.get("rootComponents", {}))

    def deployed_versions(self) -> dict[str, str]:
        return {n: s["version"] for n, s in self._state.get("services", {}).items()}

    # the two steps

    def deploy(self, request: DeploymentRequest) -> DeploymentPlan:
        plan = self.plan(request)
        self.apply(plan)
        return plan

    def plan(self, request: DeploymentRequest) -> DeploymentPlan:
        """Resolve and check everything; writes nothing."""
        catalog = self._catalog(request)
        roots = self.root_components
        for name in request.remove:
            if roots.pop(name, None) is None:
                logger.warning("--remove %s: not a root component of the current deployment",
                               name)
        roots.update(request.merge)
        for name, version in roots.items():
            if name not in self.builtins and catalog.get(name, version) is None:
                available = catalog.versions(name)
                raise DeploymentError(
                    f"{name} {version}: no recipe for this version in the recipe folder, the "
                    f"stand-ins or the component store"
                    + (f" (available: {', '.join(available)})" if available else ""))
        versions = self._resolve(roots, catalog)
        dependencies = {n: self._dependencies(n, versions[n], catalog) for n in versions}
        try:
            order = start_order({n: list(d) for n, d in dependencies.items()})
        except DependencyCycleError as exc:
            raise DeploymentError(f"components depend on each other in a cycle: "
                                  f"{' -> '.join(exc.cycle)}") from exc
        for name in request.update_config:
            if name not in versions:
                raise DeploymentError(f"--update-config {name}: not in the deployment")
            if name not in roots:
                raise DeploymentError(
                    f"--update-config {name}: the nucleus only applies configuration updates "
                    f"to root components; add --merge {name}={versions[name]}")
        timestamp = max(now_ms(), self.configuration.newest_timestamp() + 1)
        changes = self._configure(versions, catalog, request.update_config, timestamp)
        configuration = self._preview(changes)
        manifests = {n: self._manifest(catalog.get(n, v)) for n, v in versions.items()
                     if n not in self.builtins}
        variables = {n: ComponentVariables(n, self.paths(n, versions[n]),
                                           configuration.get(n, {})) for n in versions}
        components = tuple(
            dataclasses.replace(
                self._plan_component(name, versions[name], catalog, manifests.get(name),
                                     dependencies[name], variables, name in roots, request),
                posix_user=self._posix_user(name, request))
            for name in order)
        removed = tuple(sorted(set(self.deployed_versions()) - set(versions)))
        return DeploymentPlan(str(uuid.uuid4()), timestamp, components, dict(roots), removed,
                              changes)

    def apply(self, plan: DeploymentPlan) -> None:
        """Lay the files out and remember the deployment (for the next one and for restarts)."""
        for component in plan.components:
            if component.builtin:
                continue
            if component.source_kind != "store":
                self._store_recipe(component.recipe)
            if component.change != "unchanged" or \
                    not laid_out(component.paths, component.artifacts):
                # an unchanged component may be running: leave its files alone
                if component.artifact_tree is not None:
                    copy_artifact_tree(component.artifact_tree, component.paths)
                lay_out_artifacts(component.name, component.paths, component.artifacts)
            component.paths.work.mkdir(parents=True, exist_ok=True)
        services = {}
        for component in plan.components:
            if component.builtin:
                continue
            services[component.name] = {
                "version": component.version,
                "lifecycle": component.lifecycle_raw,
                "artifactsDigest": component.artifacts_digest,
                "dependencies": dict(component.dependencies),
            }
            if component.posix_user:
                services[component.name]["runWith"] = {"posixUser": component.posix_user}
        self._state = {"deploymentId": plan.deployment_id, "timestamp": plan.timestamp,
                       "rootComponents": dict(plan.root_components), "services": services}
        write_private_json(self.config_dir / DEPLOYMENT_FILE, self._state, indent=2)
        self.configuration.apply_deployment(plan.configuration_changes, plan.removed)

    # planning helpers

    def _posix_user(self, name: str, request: DeploymentRequest) -> str | None:
        """The deployment's runWith.posixUser for ``name``, else the last deployment's ("" in
        the request removes it) (KernelConfigResolver.updateRunWith)."""
        if name in request.run_with:
            return request.run_with[name] or None
        kept = self._state.get("services", {}).get(name, {}).get("runWith", {})
        return kept.get("posixUser") or None

    def _catalog(self, request: DeploymentRequest) -> ComponentCatalog:
        catalog = ComponentCatalog()
        if self.recipe_store.is_dir():
            for path in recipe_files(self.recipe_store):
                try:
                    catalog.add(RecipeSource(load_recipe(path), "store"))
                except RecipeError as exc:
                    logger.warning("component store: ignoring %s", exc)
        try:
            if request.recipe_dir is not None:
                artifact_dir = Path(request.artifact_dir) if request.artifact_dir else None
                for recipe in scan_recipe_dir(Path(request.recipe_dir)):
                    dirs = (artifact_dir / recipe.name / recipe.version,) if artifact_dir else ()
                    catalog.add(RecipeSource(recipe, "recipe-dir", dirs))
            for folder in request.stand_ins:
                for source in load_stand_in(Path(folder)):
                    catalog.add(source)
        except RecipeError as exc:
            raise DeploymentError(str(exc)) from exc
        return catalog

    def _recipe(self, name: str, version: str, catalog: ComponentCatalog) -> Recipe | None:
        if name in self.builtins:
            return None
        source = catalog.get(name, version)
        assert source is not None
        return source.recipe

    def _dependencies(self, name: str, version: str, catalog: ComponentCatalog) -> dict[str, str]:
        recipe = self._recipe(name, version, catalog)
        if recipe is None:
            return {}
        return {d.name: d.dependency_type for d in recipe.dependencies.values()}

    def _choose(self, name: str, requirements: list[tuple[str, VersionRange]],
                catalog: ComponentCatalog) -> str:
        if name in self.builtins:
            candidates = [self.builtins[name]]
        else:
            candidates = catalog.versions(name)
        needed_by = ", ".join(f"{r} (from {d})" for d, r in requirements)
        if not candidates:
            raise DeploymentError(
                f"{name}, needed by {', '.join(d for d, _ in requirements)}: no recipe in the "
                "recipe folder, the stand-ins or the component store (give a stand-in folder "
                "for public components)")
        fitting = [v for v in candidates if all(r.matches(v) for _, r in requirements)]
        if not fitting:
            raise DeploymentError(f"no version of {name} satisfies {needed_by}; available: "
                                  f"{', '.join(candidates)}")
        deployed = self.deployed_versions().get(name)
        return deployed if deployed in fitting else fitting[0]

    def _resolve(self, roots: Mapping[str, str], catalog: ComponentCatalog) -> dict[str, str]:
        """Pick a version for every component in the closure of ``roots``."""
        chosen = dict(roots)
        for _ in range(100):
            requirements: dict[str, list[tuple[str, VersionRange]]] = {}
            seen: list[str] = []
            queue = sorted(roots)
            while queue:
                name = queue.pop(0)
                if name in seen:
                    continue
                seen.append(name)
                if name not in chosen:
                    chosen[name] = self._choose(name, requirements.get(name, []), catalog)
                recipe = self._recipe(name, chosen[name], catalog)
                for dep in (recipe.dependencies.values() if recipe else ()):
                    requirements.setdefault(dep.name, []).append((name, dep.version_requirement))
                    queue.append(dep.name)
            settled = True
            for name, needs in requirements.items():
                unmet = [(d, r) for d, r in needs if not r.matches(chosen[name])]
                if not unmet:
                    continue
                if name in roots or name in self.builtins:
                    source = "root component" if name in roots else "built in"
                    raise DeploymentError(
                        f"{name} {chosen[name]} ({source}) does not satisfy "
                        + ", ".join(f"{d}'s requirement {r}" for d, r in unmet))
                chosen[name] = self._choose(name, needs, catalog)
                settled = False
            chosen = {n: chosen[n] for n in seen}
            if settled:
                return chosen
        raise DeploymentError("component versions did not settle (conflicting requirements)")

    def _manifest(self, source: RecipeSource | None) -> Manifest:
        assert source is not None
        try:
            return select_manifest(source.recipe, self.platform)
        except NoMatchingManifestError as exc:
            raise DeploymentError(str(exc)) from exc

    def _configure(self, versions: Mapping[str, str], catalog: ComponentCatalog,
                   updates: Mapping[str, ConfigurationUpdate], timestamp: int
                   ) -> tuple[ConfigurationChange, ...]:
        changes = []
        for name, version in versions.items():
            recipe = self._recipe(name, version, catalog)
            if recipe is None:
                continue
            update = updates.get(name)
            changes.append(ConfigurationChange(
                name, recipe.default_configuration, update.reset if update else (),
                dict(update.merge) if update else {}, timestamp))
        return tuple(changes)

    def _preview(self, changes: tuple[ConfigurationChange, ...]) -> dict[str, dict[str, Any]]:
        """Each component's configuration once ``changes`` are applied (the store unchanged)."""
        trees = self.configuration.trees()
        return {c.component: c.apply_to(trees.get(c.component, ConfigTree())).to_dict()
                for c in changes}

    def _plan_component(self, name: str, version: str, catalog: ComponentCatalog,
                        manifest: Manifest | None, dependencies: Mapping[str, str],
                        variables: Mapping[str, ComponentVariables], is_root: bool,
                        request: DeploymentRequest) -> PlannedComponent:
        paths = self.paths(name, version)
        previous = self._state.get("services", {}).get(name)
        if name in self.builtins:
            return PlannedComponent(name, version, None, None, is_root, {}, {}, paths,
                                    ComponentLifecycle(), {}, builtin=True,
                                    change="unchanged" if previous else "new")
        source = catalog.get(name, version)
        assert source is not None and manifest is not None
        recipe = source.recipe
        if recipe.component_type != "aws.greengrass.generic":
            logger.warning("%s is of type %s; the local runtime runs its lifecycle as a generic "
                           "component's", name, recipe.component_type)
        context = InterpolationContext(
            component=variables[name], kernel_root=self.root, thing_name=self.thing_name,
            direct_dependencies=frozenset(dependencies), deployed=variables)
        try:
            raw = interpolate(effective_lifecycle(recipe, manifest), context)
        except InterpolationError as exc:
            raise DeploymentError(f"{recipe.source}: {exc}") from exc
        label = f"{manifest.label}.Lifecycle" if manifest.lifecycle else "Lifecycle"
        try:
            lifecycle = parse_lifecycle(raw, recipe.source, label)
        except RecipeError as exc:
            raise DeploymentError(str(exc)) from exc
        artifacts = tuple(find_artifact(source, manifest, artifact, request, paths)
                          for artifact in manifest.artifacts)
        tree = artifact_tree(source, request)
        digest = hashlib.sha256()
        # the files besides the listed artifacts: from the artifact folder, or (a deployment
        # from the component store) as laid out by an earlier deployment
        unlisted = tree if tree is not None else (
            paths.artifacts if source.kind == "store" and paths.artifacts.is_dir() else None)
        if unlisted is not None:
            hash_unlisted(digest, unlisted, [a.artifact.file_name for a in artifacts])
        for found in artifacts:
            digest.update(found.artifact.file_name.encode())
            for path in (found.path, found.unpacked_dir):
                if path is not None:
                    hash_path(digest, path)
        change, bootstrap = self._change(previous, version, lifecycle, digest.hexdigest(),
                                         dependencies, recipe)
        return PlannedComponent(
            name=name, version=version, recipe=recipe, manifest=manifest, is_root=is_root,
            dependencies=dict(dependencies), configuration=variables[name].configuration,
            paths=paths, lifecycle=lifecycle, lifecycle_raw=raw, artifacts=artifacts,
            artifact_tree=tree, artifacts_digest=digest.hexdigest(), source_kind=source.kind,
            run_bootstrap=bootstrap, change=change)

    @staticmethod
    def _change(previous: Mapping[str, Any] | None, version: str, lifecycle: ComponentLifecycle,
                digest: str, dependencies: Mapping[str, str], recipe: Recipe) -> tuple[str, bool]:
        has_bootstrap = lifecycle.step("Bootstrap") is not None
        if previous is None:
            return "new", has_bootstrap
        old = parse_lifecycle(previous.get("lifecycle", {}), recipe.source)
        if previous.get("version") != version:
            return "reinstall", has_bootstrap
        bootstrap_changed = has_bootstrap and old.step("Bootstrap") != lifecycle.step("Bootstrap")
        if bootstrap_changed or old.step("Install") != lifecycle.step("Install") \
                or previous.get("artifactsDigest") != digest:
            return "reinstall", bootstrap_changed
        if old != lifecycle or dict(previous.get("dependencies", {})) != dict(dependencies):
            return "restart", False
        return "unchanged", False

    def _store_recipe(self, recipe: Recipe | None) -> None:
        assert recipe is not None
        source = Path(recipe.source)
        suffix = source.suffix.lower() if source.suffix.lower() in RECIPE_SUFFIXES else ".yaml"
        target = self.recipe_store / f"{recipe.name}-{recipe.version}{suffix}"
        self.recipe_store.mkdir(parents=True, exist_ok=True)
        for stale in self.recipe_store.glob(f"{recipe.name}-{recipe.version}.*"):
            if stale != target:
                stale.unlink()
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)

