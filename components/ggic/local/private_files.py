"""Files only the runtime's user can read: configuration (secrets included), deployment records,
logs and the CLI token are created 0600 in folders created 0700, from the start (never created
readable and narrowed afterwards). Component work folders and artifacts are not made here."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path, *, narrow: bool = True) -> Path:
    """Create ``path`` (and missing parents) as 0700; with ``narrow`` an existing ``path`` is
    made 0700 too (its existing parents are left alone)."""
    path = Path(path)
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, PRIVATE_DIR_MODE)
    if narrow or missing:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def write_private_json(path: Path, data: Any, *, indent: int | None = None) -> None:
    """Replace ``path`` atomically with JSON only its owner can read (0600 from the start)."""
    path = Path(path)
    private_dir(path.parent, narrow=False)
    temporary = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=indent, sort_keys=indent is not None)
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def open_private_append(path: Path) -> IO[str]:
    """``open(path, "a")`` for text, creating the file 0600 (an existing one is made 0600)."""
    path = Path(path)
    private_dir(path.parent, narrow=False)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
    os.fchmod(fd, PRIVATE_FILE_MODE)
    return os.fdopen(fd, "a", encoding="utf-8")
