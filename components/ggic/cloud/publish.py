"""``gdk component publish`` for a ``greengrass-build`` folder, without GDK.

For each component in the folder (``recipes/<file>`` and ``artifacts/<name>/<version>/``, the
layout ``ggic build`` and ``gdk component build`` write), as GDK 1.6 does:

1. the account comes from STS GetCallerIdentity, the bucket is ``<prefix>-<region>-<account>``
   (or a bucket given as is), created when missing (``LocationConstraint`` outside us-east-1);
2. a version of ``NEXT_PATCH`` becomes the patch after the highest version of the component in
   the account and region (ListComponentVersions), or ``1.0.0`` for a new component;
3. every file of the artifacts folder is uploaded to ``s3://<bucket>/<name>/<version>/<file>``;
4. each ``s3://`` artifact URI of the recipe whose file was built becomes that object's URI
   (the build leaves ``s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/<file>``), the recipe
   is written as ``<name>-<version>.<yaml|json>`` in the same format and sent inline to
   CreateComponentVersion.

Unlike GDK, the publish recipe goes to ``greengrass-build/published-recipes/``, not
``recipes/``: a second recipe of the same component in ``recipes/`` would break
``greengrass-cli deployment create --recipeDir greengrass-build/recipes``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..gdk_build import (
    BUILD_URI_PREFIX,
    CONFIG_FILE,
    read_recipe,
    recipe_value,
    set_recipe_value,
    write_recipe,
)
from ..semver import Version
from .aws import AwsClients, CloudError, Poller, aws_errors, check_bucket_name, ensure_bucket
from .aws import upload_file as s3_upload

log = logging.getLogger(__name__)

NEXT_PATCH = "NEXT_PATCH"
FIRST_VERSION = "1.0.0"
PUBLISHED_RECIPES_DIR = "published-recipes"


class PublishError(ValueError):
    """The build folder or the publish settings cannot be published as they are."""


@dataclass(frozen=True)
class BuiltComponent:
    """One component of a greengrass-build folder."""

    name: str
    version: str
    recipe_path: Path
    artifacts_dir: Path

    @property
    def artifact_files(self) -> list[Path]:
        if not self.artifacts_dir.is_dir():
            return []
        return sorted(p for p in self.artifacts_dir.iterdir() if p.is_file())


@dataclass(frozen=True)
class PublishedComponent:
    name: str
    version: str
    arn: str
    bucket: str
    uploaded: tuple[str, ...]
    recipe_path: Path
    state: str


def find_built_components(build_dir: Path,
                          names: Sequence[str] | None = None) -> list[BuiltComponent]:
    """The components of a greengrass-build folder (only ``names`` when given)."""
    recipes_dir = build_dir / "recipes"
    if not recipes_dir.is_dir():
        raise PublishError(f"{build_dir} has no recipes/ folder: run `ggic build` first")
    found = []
    for path in sorted(recipes_dir.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        recipe = read_recipe(path)
        name = recipe_value(recipe, "ComponentName")
        version = recipe_value(recipe, "ComponentVersion")
        if not isinstance(name, str) or version is None:
            raise PublishError(f"{path} has no ComponentName/ComponentVersion")
        version = str(version)
        found.append(BuiltComponent(name, version, path,
                                    build_dir / "artifacts" / name / version))
    if names:
        missing = sorted(set(names) - {c.name for c in found})
        if missing:
            raise PublishError(f"{recipes_dir} has no recipe for {', '.join(missing)} "
                               f"(found: {', '.join(c.name for c in found) or 'none'})")
        found = [c for c in found if c.name in names]
    if not found:
        raise PublishError(f"{recipes_dir} holds no recipe")
    seen: dict[str, Path] = {}
    for component in found:
        if component.name in seen:
            raise PublishError(f"{component.name} has two recipes: {seen[component.name]} and "
                               f"{component.recipe_path}")
        seen[component.name] = component.recipe_path
    return found


def rewrite_artifact_uris(recipe: dict[str, Any], bucket: str, name: str, version: str,
                          built_files: Sequence[str]) -> list[tuple[str, str]]:
    """Point the recipe's artifacts at ``s3://bucket/name/version/<file>``: (old, new) pairs.

    As GDK: every ``s3://`` URI whose file the build produced is rewritten, other URIs (an
    object that already exists elsewhere, docker:, ...) stay. A build placeholder whose file
    is missing is an error here (GDK only warns, and CreateComponentVersion then fails).
    """
    changes = []
    built = set(built_files)
    for manifest in recipe_value(recipe, "Manifests") or []:
        for artifact in recipe_value(manifest, "Artifacts") or []:
            uri = recipe_value(artifact, "URI")
            if not isinstance(uri, str) or not uri.startswith("s3://"):
                continue
            file_name = uri.rsplit("/", 1)[-1]
            if file_name in built:
                new = f"s3://{bucket}/{name}/{version}/{file_name}"
                set_recipe_value(artifact, "URI", new)
                changes.append((uri, new))
            elif uri.startswith(BUILD_URI_PREFIX + "/"):
                raise PublishError(
                    f"{name}: artifact {uri} was not built (no {file_name} in the artifacts "
                    "folder): run `ggic build` again")
    return changes


# --- versions -------------------------------------------------------------------------------


def _parsed(version: str) -> Version | None:
    try:
        return Version.parse(version)
    except ValueError:
        return None


def highest_version(versions: Sequence[str]) -> str | None:
    keyed = [(k, v) for v in versions if (k := _parsed(v)) is not None]
    skipped = sorted(set(versions) - {v for _, v in keyed})
    if skipped:
        log.warning("ignoring versions that are not semantic versions: %s", ", ".join(skipped))
    return max(keyed)[1] if keyed else None


def next_patch(version: str) -> str:
    """The patch after ``version`` (pre-release and build metadata dropped, as GDK does)."""
    parsed = _parsed(version)
    if parsed is None:
        raise PublishError(f"{version!r} is not a semantic version")
    return f"{parsed.major}.{parsed.minor}.{parsed.patch + 1}"


def component_arn(clients: AwsClients, name: str) -> str:
    return (f"arn:{clients.partition}:greengrass:{clients.region}:{clients.account()}:"
            f"components:{name}")


def resolve_next_patch(clients: AwsClients, name: str) -> str:
    """GDK's NEXT_PATCH: the patch after the highest version in the account, else 1.0.0."""
    greengrass = clients.client("greengrassv2")
    arn = component_arn(clients, name)
    versions: list[str] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"arn": arn}
        if token:
            kwargs["nextToken"] = token
        try:
            with aws_errors("ListComponentVersions", "greengrassv2"):
                page = greengrass.list_component_versions(**kwargs)
        except CloudError as exc:
            if exc.code == "ResourceNotFoundException":
                break
            raise
        versions.extend(str(v["componentVersion"]) for v in page.get("componentVersions", []))
        token = page.get("nextToken")
        if not token:
            break
    highest = highest_version(versions)
    version = next_patch(highest) if highest else FIRST_VERSION
    log.info("%s: highest version in the account %s, publishing %s", name, highest or "none",
             version)
    return version


# --- publishing -----------------------------------------------------------------------------


def artifact_bucket(prefix: str, region: str, account: str) -> str:
    """GDK's bucket name: ``<prefix>-<region>-<account>``."""
    name = f"{prefix.strip()}-{region}-{account}"
    try:
        return check_bucket_name(name)
    except ValueError as exc:
        raise PublishError(f"bucket prefix {prefix!r} gives an invalid bucket name: {exc}") \
            from None


def publish_settings_from_gdk_config(build_dir: Path) -> dict[str, str]:
    """``publish.bucket`` and ``publish.region`` of the gdk-config.json beside the build folder
    (the defaults of ``gdk component publish``); empty when there is none."""
    config_path = build_dir.resolve().parent / CONFIG_FILE
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    for component in (config.get("component") or {}).values():
        publish = component.get("publish") or {}
        return {k: str(v) for k, v in publish.items() if k in ("bucket", "region") and v}
    return {}


_CREATE_HINTS = {
    "ConflictException": "this version already exists in the account and region: component "
                         "versions are immutable, so raise ComponentVersion (or use "
                         "NEXT_PATCH in gdk-config.json) and build again",
    "ValidationException": "the recipe was refused: fix it (GDK's recipe schema is a good "
                           "first check) and build again",
    "ServiceQuotaExceededException": "the account has reached a Greengrass quota: delete "
                                     "unused component versions or ask for a higher quota",
}


def publish_component(clients: AwsClients, component: BuiltComponent, bucket: str, *,
                      wait: Poller | None = None) -> PublishedComponent:
    """Publish one built component into ``bucket`` (which must exist)."""
    version = component.version
    if version == NEXT_PATCH:
        version = resolve_next_patch(clients, component.name)
    files = component.artifact_files
    recipe = read_recipe(component.recipe_path)
    set_recipe_value(recipe, "ComponentVersion", version)
    changes = rewrite_artifact_uris(recipe, bucket, component.name, version,
                                    [f.name for f in files])
    s3 = clients.client("s3")
    uploaded = tuple(s3_upload(s3, f, bucket, f"{component.name}/{version}/{f.name}")
                     for f in files)
    for old, new in changes:
        log.info("%s: %s -> %s", component.name, old, new)
    out_dir = component.recipe_path.parent.parent / PUBLISHED_RECIPES_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".json" if component.recipe_path.suffix == ".json" else ".yaml"
    publish_recipe = out_dir / f"{component.name}-{version}{suffix}"
    write_recipe(publish_recipe, recipe)
    with aws_errors("CreateComponentVersion", "greengrassv2", _CREATE_HINTS):
        response = clients.client("greengrassv2").create_component_version(
            inlineRecipe=publish_recipe.read_bytes())
    arn = str(response["arn"])
    state = str((response.get("status") or {}).get("componentState", "REQUESTED"))
    log.info("created %s %s (%s): %s", component.name, version, arn, state)
    if wait is not None:
        state = wait_until_deployable(clients, arn, wait)
    return PublishedComponent(component.name, version, arn, bucket, uploaded, publish_recipe,
                              state)


def wait_until_deployable(clients: AwsClients, arn: str, poller: Poller) -> str:
    """Poll DescribeComponent until Greengrass has checked the artifacts (DEPLOYABLE).

    FAILED (an artifact Greengrass cannot read, a bad digest...) raises CloudError with
    Greengrass's message and per-artifact errors.
    """
    greengrass = clients.client("greengrassv2")

    def poll() -> tuple[bool, str]:
        with aws_errors("DescribeComponent", "greengrassv2"):
            status = greengrass.describe_component(arn=arn).get("status") or {}
        state = str(status.get("componentState", "UNKNOWN"))
        if state == "FAILED":
            errors = "; ".join(f"{k}: {v}" for k, v in (status.get("errors") or {}).items())
            raise CloudError(
                "CreateComponentVersion", "ComponentFailed",
                f"{arn} is FAILED: {status.get('message', '')} {errors}".strip(),
                "check that the artifacts are in a bucket of this region and that the "
                "recipe's URIs name them exactly",
            )
        return state == "DEPLOYABLE", state

    return poller.until(f"{arn} to become DEPLOYABLE", poll)


def publish_build(clients: AwsClients, build_dir: Path, *, bucket_prefix: str | None = None,
                  bucket: str | None = None, components: Sequence[str] | None = None,
                  create_bucket: bool = True,
                  wait: Poller | None = None) -> list[PublishedComponent]:
    """Publish the components of ``build_dir`` (all, or those named) like GDK."""
    if bool(bucket_prefix) == bool(bucket):
        raise PublishError("give either a bucket prefix (bucket <prefix>-<region>-<account>, "
                           "GDK's naming) or a full bucket name")
    built = find_built_components(build_dir, components)
    for component in built:
        if not component.artifact_files and _has_build_placeholders(component):
            raise PublishError(f"{component.name}: {component.artifacts_dir} is missing or "
                               "empty: run `ggic build` first")
    if bucket is None:
        bucket = artifact_bucket(str(bucket_prefix), clients.region, clients.account())
    else:
        check_bucket_name(bucket)
    if any(c.artifact_files for c in built):
        ensure_bucket(clients.client("s3"), bucket, clients.region, create=create_bucket)
    return [publish_component(clients, c, bucket, wait=wait) for c in built]


def _has_build_placeholders(component: BuiltComponent) -> bool:
    return BUILD_URI_PREFIX in component.recipe_path.read_text(encoding="utf-8")
