"""Unpack a (possibly hostile) tar archive without letting it write outside one folder.

Refused, before anything is written: absolute names, ``..`` components, device files and
FIFOs, symbolic links whose target is absolute or has a ``..`` component (so every link points
down into its own folder, which keeps whole chains of links inside the target), hard links to
anything but a regular file of the same archive, and members whose path goes through a link.
Files get plain permissions (no setuid/setgid/sticky bits, read-write for the owner).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 8 * 1024**3


class UnsafeArchiveError(ValueError):
    """The archive holds a member that would escape the target folder (or is not a file)."""


def _member_parts(name: str) -> tuple[str, ...]:
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"member with an empty or NUL-containing name: {name!r}")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"member {name!r} has an absolute path")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"member {name!r} has a '..' component")
    return parts


def _check_link_target(member: tarfile.TarInfo) -> None:
    target = member.linkname
    if not target or target.startswith("/") or "\x00" in target:
        raise UnsafeArchiveError(
            f"link {member.name!r} -> {target!r} points to an absolute or empty path")
    if ".." in PurePosixPath(target).parts:
        raise UnsafeArchiveError(
            f"link {member.name!r} -> {target!r} goes up with '..' (it could leave the folder)")


def check_members(members: list[tarfile.TarInfo], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Refuse the archive (UnsafeArchiveError) if any member is unsafe; nothing is written."""
    total = 0
    regular: set[tuple[str, ...]] = set()
    for member in members:
        parts = _member_parts(member.name)
        if member.issym():
            _check_link_target(member)
        elif member.islnk():
            link_parts = _member_parts(member.linkname)
            if link_parts not in regular:
                raise UnsafeArchiveError(
                    f"hard link {member.name!r} -> {member.linkname!r} does not point to an "
                    "earlier regular file of the archive")
        elif member.isfile():
            total += member.size
            if total > max_bytes:
                raise UnsafeArchiveError(f"archive unpacks to more than {max_bytes} bytes")
            regular.add(parts)
        elif not member.isdir():
            raise UnsafeArchiveError(
                f"member {member.name!r} is a device, FIFO or other special file")


def _refuse_links_on_path(target: Path, parts: tuple[str, ...]) -> None:
    current = target
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise UnsafeArchiveError(
                f"member {'/'.join(parts)!r} would be written through the link {current}")
    final = target.joinpath(*parts)
    if final.is_symlink():
        raise UnsafeArchiveError(f"member {'/'.join(parts)!r} would replace the link {final}")


def _open_tar(archive: str | os.PathLike) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise UnsafeArchiveError(f"{archive} is not a readable tar archive: {exc}") from None


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> list[Path]:
    """Unpack ``archive`` (any tar compression) into ``target``; the regular files written.

    The whole member list is checked before anything is written; on an unsafe member nothing
    is unpacked.
    """
    dest = Path(target)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with _open_tar(archive) as tar:
        members = tar.getmembers()
        check_members(members, max_bytes)
        for member in members:
            parts = _member_parts(member.name)
            if not parts:
                continue
            _refuse_links_on_path(dest, parts)
            path = dest.joinpath(*parts)
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.is_dir():
                raise UnsafeArchiveError(f"member {member.name!r} would replace a directory")
            if member.issym():
                if path.exists():
                    path.unlink()
                os.symlink(member.linkname, path)
                continue
            if member.islnk():
                source = dest.joinpath(*_member_parts(member.linkname))
                shutil.copyfile(source, path)
            else:
                extracted = tar.extractfile(member)
                if extracted is None:  # pragma: no cover - regular files always have data
                    raise UnsafeArchiveError(f"member {member.name!r} has no data")
                with extracted, path.open("wb") as out:
                    shutil.copyfileobj(extracted, out)
            mode = member.mode & 0o777 & ~(stat.S_IWGRP | stat.S_IWOTH)
            os.chmod(path, mode | stat.S_IRUSR | stat.S_IWUSR)
            written.append(path)
    log.info("unpacked %d files from %s into %s", len(written), archive, dest)
    return written
