"""A deployment's artifact files: where each is found, whether it is laid out, and laying it
out as the nucleus does (``packages/artifacts/<name>/<version>/``, ZIPs unpacked safely into
``packages/artifacts-unarchived/<name>/<version>/<zip name>/``) with the recipe's
``Permission``."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalog import RecipeSource
from .deployment_request import DeploymentError, DeploymentRequest
from .interpolation import ComponentPaths
from .recipe import Artifact, Manifest

logger = logging.getLogger(__name__.rsplit(".", 1)[0] + ".deployment")


@dataclass(frozen=True)
class ArtifactSource:
    artifact: Artifact
    path: Path | None  # the file, or None if only an unpacked folder is given
    unpacked_dir: Path | None = None  # a ZIP given already unpacked
    skipped: bool = False  # e.g. docker: images, not files


def hash_path(digest: Any, path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file():
                digest.update(str(child.relative_to(path)).encode())
                _hash_file(digest, child)
    else:
        _hash_file(digest, path)


def hash_unlisted(digest: Any, tree: Path, listed: Sequence[str]) -> None:
    """Hash the files under ``tree`` other than the ``listed`` artifact file names (those are
    hashed where they are found), so a folder and its laid-out copy hash alike."""
    for child in sorted(tree.rglob("*")):
        relative = str(child.relative_to(tree))
        if child.is_file() and relative not in listed:
            digest.update(relative.encode())
            _hash_file(digest, child)


def _hash_file(digest: Any, path: Path) -> None:
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)


def find_artifact(source: RecipeSource, manifest: Manifest, artifact: Artifact,
                  request: DeploymentRequest, paths: ComponentPaths) -> ArtifactSource:
    recipe = source.recipe
    if artifact.scheme == "docker":
        logger.warning("%s: %s is a Docker image; not pulled locally", recipe.name,
                       artifact.uri)
        return ArtifactSource(artifact, None, skipped=True)
    folders = list(source.artifact_dirs)
    if request.artifact_dir is not None:
        folders.append(Path(request.artifact_dir) / recipe.name / recipe.version)
    folders.append(paths.artifacts)
    for folder in folders:
        candidate = folder / artifact.file_name
        if candidate.is_file():
            return ArtifactSource(artifact, candidate)
    if artifact.unarchive == "ZIP":
        unpacked_homes = [f for f in folders if f != paths.artifacts] + [paths.decompressed]
        for folder in unpacked_homes:
            candidate = folder / artifact.unarchive_dir_name
            if candidate.is_dir():
                return ArtifactSource(artifact, None, unpacked_dir=candidate)
    looked = ", ".join(str(f) for f in folders)
    raise DeploymentError(
        f"{recipe.source}: {manifest.label}: artifact {artifact.file_name} of {recipe.name} "
        f"{recipe.version} not found (looked in {looked})")


def laid_out(paths: ComponentPaths, artifacts: Sequence[ArtifactSource]) -> bool:
    for found in artifacts:
        if found.skipped:
            continue
        if found.path is not None and \
                not (paths.artifacts / found.artifact.file_name).is_file():
            return False
        if found.artifact.unarchive == "ZIP" and not (
                paths.decompressed / found.artifact.unarchive_dir_name).is_dir():
            return False
    return True


def artifact_tree(source: RecipeSource, request: DeploymentRequest) -> Path | None:
    """``--artifactDir/<name>/<version>/`` for a recipe from the recipe folder, if it exists.

    The nucleus copies the whole artifact folder of a local deployment into its component store
    (``DeploymentService.copyRecipesAndArtifacts``), not only the files a manifest lists: a
    recipe without ``Artifacts`` (AWS's HelloWorld tutorial) finds its script there."""
    if source.kind != "recipe-dir" or request.artifact_dir is None:
        return None
    folder = Path(request.artifact_dir) / source.recipe.name / source.recipe.version
    return folder if folder.is_dir() else None


def copy_artifact_tree(tree: Path, paths: ComponentPaths) -> None:
    """Copy every file under ``tree`` into ``packages/artifacts/<name>/<version>/`` (modes as
    the source's, as Java's ``Files.copy``; listed artifacts get their recipe permission
    afterwards)."""
    target_root = paths.artifacts
    if tree.resolve() == target_root.resolve():
        return
    for current, folders, files in os.walk(tree):
        folders.sort()
        relative = Path(current).relative_to(tree)
        (target_root / relative).mkdir(parents=True, exist_ok=True)
        for file_name in sorted(files):
            target = target_root / relative / file_name
            if target.exists() or target.is_symlink():
                target.unlink()  # artifacts are read-only: replace, don't overwrite
            shutil.copy(os.path.join(current, file_name), target)


def lay_out_artifacts(name: str, paths: ComponentPaths, artifacts: Sequence[ArtifactSource]
                      ) -> None:
    """Copy the artifact files into ``packages/artifacts`` and unpack the ZIPs into
    ``packages/artifacts-unarchived``, with the recipe's permissions."""
    for found in artifacts:
        if found.skipped:
            continue
        artifact = found.artifact
        if found.path is not None:
            target = paths.artifacts / artifact.file_name
            if found.path.resolve() != target.resolve():
                paths.artifacts.mkdir(parents=True, exist_ok=True)
                if target.exists() or target.is_symlink():
                    target.unlink()
                shutil.copyfile(found.path, target)
            _set_mode(target, artifact)
        if artifact.unarchive != "ZIP":
            continue
        destination = paths.decompressed / artifact.unarchive_dir_name
        if found.unpacked_dir is not None and \
                found.unpacked_dir.resolve() == destination.resolve():
            continue
        if destination.exists():
            shutil.rmtree(destination)
        destination.mkdir(parents=True)
        if found.path is not None:
            _unzip(found.path, destination, name)
        else:
            shutil.copytree(found.unpacked_dir, destination, dirs_exist_ok=True)
        _set_tree_mode(destination, artifact)


def _mode(artifact: Artifact) -> int:
    """File mode for an artifact's ``Permission`` (never writable: artifacts are read-only)."""
    mode = 0
    read, execute = artifact.permission.read, artifact.permission.execute
    if read == "OWNER" or execute == "OWNER":
        mode |= stat.S_IRUSR
    if read == "ALL" or execute == "ALL":
        mode |= stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    if execute == "OWNER":
        mode |= stat.S_IXUSR
    if execute == "ALL":
        mode |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    return mode


def _set_mode(path: Path, artifact: Artifact) -> None:
    os.chmod(path, _mode(artifact))


def _set_tree_mode(folder: Path, artifact: Artifact) -> None:
    """Unpacked files get the artifact's permission; folders stay listable by all (and
    writable by their owner, so a later deployment can replace them)."""
    mode = _mode(artifact)
    for current, _dirs, files in os.walk(folder):
        os.chmod(current, 0o755)
        for name in files:
            os.chmod(os.path.join(current, name), mode)


def _unzip(archive: Path, destination: Path, component: str) -> None:
    base = destination.resolve()
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                target = (destination / member.filename).resolve()
                if base != target and base not in target.parents:
                    raise DeploymentError(f"{component}: {archive.name} has an entry outside "
                                          f"its folder: {member.filename}")
            zipped.extractall(destination)
    except zipfile.BadZipFile as exc:
        raise DeploymentError(f"{component}: {archive} is not a ZIP file: {exc}") from exc
