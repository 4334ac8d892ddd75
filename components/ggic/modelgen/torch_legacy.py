"""Read a PyTorch checkpoint (state dict) into numpy arrays without torch.

Two on-disk formats exist:

- the LEGACY format (``torch.save(..., _use_new_zipfile_serialization=False)``, and every
  checkpoint written before PyTorch 1.6): five pickles in a row (magic number, protocol version,
  system info, the object with *persistent ids* standing for storages, the list of storage keys)
  followed by the raw storages in key-list order, each an int64 element count and the elements;
- the ZIP format (PyTorch >= 1.6): ``<root>/data.pkl`` plus one ``<root>/data/<key>`` entry per
  storage. Read here too, because ``torch.save`` writes it by default.

Unpickling is restricted: :class:`_CheckpointUnpickler` resolves only the handful of globals a
state dict needs (``collections.OrderedDict``, torch's tensor rebuild functions and storage
types, all mapped to harmless stand-ins) and refuses any other, so a malicious file cannot run
code. Tensors come back as C-contiguous numpy arrays with the checkpoint's shapes.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)

#: First pickle of a legacy file: this number (``torch.serialization.MAGIC_NUMBER``).
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

#: Storage type name -> numpy element type (little-endian; byte order fixed up on read).
STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class CheckpointError(ValueError):
    """The file is not a checkpoint this reader understands, or it names a forbidden global."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass
class _StorageRef:
    """A storage named by the pickle; its bytes arrive after the pickle (or from the zip)."""

    key: str
    dtype: np.dtype
    numel: int
    #: (root key, element offset) when this is a view into another storage (legacy only).
    view_of: tuple[str, int] | None = None


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise CheckpointError("tensor rebuild without a storage")
    try:
        return _TensorRef(storage, int(offset), tuple(int(s) for s in size),
                          tuple(int(s) for s in stride))
    except (TypeError, ValueError):
        raise CheckpointError("malformed tensor record in checkpoint") from None


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    return data


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickler that knows storages and tensors and nothing else."""

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file: IO[bytes], *, allow_globals: bool = True) -> None:
        super().__init__(file)
        self._allow_globals = allow_globals
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if self._allow_globals:
            if (module, name) in self._ALLOWED:
                return self._ALLOWED[(module, name)]
            if module == "torch" and name in STORAGE_DTYPES:
                return _StorageType(name)
        raise CheckpointError(
            f"checkpoint refers to {module}.{name}, which a plain state dict never needs; "
            "refusing to load it"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not self._allow_globals:
            raise CheckpointError("unexpected persistent id in checkpoint header")
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage type {storage_type!r:.80}")
        view = pid[5] if len(pid) > 5 else None
        root = self.storages.get(key)
        if root is None:
            root = _StorageRef(key, storage_type.dtype, numel)
            self.storages[key] = root
        if view is None:
            return root
        view_key, view_offset, view_numel = str(view[0]), int(view[1]), int(view[2])
        return _StorageRef(view_key, root.dtype, view_numel, view_of=(key, view_offset))


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a state-dict checkpoint, by name, in file order."""
    p = Path(path)
    with p.open("rb") as f:
        head = f.read(4)
        f.seek(0)
        if head.startswith(b"PK\x03\x04"):
            return _read_zip(f, str(p))
        return _read_legacy(f, str(p))


def _read_legacy(f: IO[bytes], source: str) -> dict[str, np.ndarray]:
    header = _CheckpointUnpickler(f, allow_globals=False)
    try:
        magic = header.load()
        if magic != LEGACY_MAGIC:
            raise CheckpointError(f"{source} is not a PyTorch checkpoint (bad magic number)")
        protocol = header.load()
        if protocol != LEGACY_PROTOCOL:
            raise CheckpointError(f"{source}: unsupported legacy protocol {protocol!r}")
        sys_info = header.load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{source} is not a PyTorch checkpoint: {exc}") from None
    little_endian = True
    if isinstance(sys_info, dict):
        little_endian = bool(sys_info.get("little_endian", True))
    body = _CheckpointUnpickler(f)
    try:
        obj = body.load()
        keys = _CheckpointUnpickler(f, allow_globals=False).load()
    except (pickle.UnpicklingError, EOFError) as exc:
        raise CheckpointError(f"{source}: corrupt checkpoint pickle: {exc}") from None
    if not isinstance(keys, list):
        raise CheckpointError(f"{source}: storage key list missing")
    order = "<" if little_endian else ">"
    data: dict[str, np.ndarray] = {}
    for key in keys:
        ref = body.storages.get(str(key))
        if ref is None:
            raise CheckpointError(f"{source}: storage {key} is listed but never used")
        (numel,) = struct.unpack(order + "q", _read_exactly(f, 8, source))
        dtype = ref.dtype.newbyteorder(order)
        raw = _read_exactly(f, numel * dtype.itemsize, source)
        data[ref.key] = np.frombuffer(raw, dtype=dtype).astype(ref.dtype.newbyteorder("="))
    return _materialise(obj, data, source)


def _read_zip(f: IO[bytes], source: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(f) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"{source}: expected one data.pkl in the archive")
        root = pickles[0][: -len("data.pkl")]
        unpickler = _CheckpointUnpickler(io.BytesIO(archive.read(pickles[0])))
        try:
            obj = unpickler.load()
        except (pickle.UnpicklingError, EOFError) as exc:
            raise CheckpointError(f"{source}: corrupt checkpoint pickle: {exc}") from None
        data = {}
        for key, ref in unpickler.storages.items():
            raw = archive.read(f"{root}data/{key}")
            data[key] = np.frombuffer(raw, dtype=ref.dtype.newbyteorder("<")).astype(ref.dtype)
    return _materialise(obj, data, source)


def _read_exactly(f: IO[bytes], n: int, source: str) -> bytes:
    remaining = os.fstat(f.fileno()).st_size - f.tell()
    if n < 0 or n > remaining:
        raise CheckpointError(f"{source} is truncated or corrupt (a record of {n} bytes)")
    raw = f.read(n)
    if len(raw) != n:
        raise CheckpointError(f"{source} is truncated")
    return raw


def _materialise(obj: Any, data: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source} does not hold a state dict (got {type(obj).__name__})")
    out: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if not isinstance(value, _TensorRef):
            log.debug("%s: skipping non-tensor entry %s", source, name)
            continue
        out[str(name)] = _tensor_array(value, data, source, str(name))
    return out


def _tensor_array(
    ref: _TensorRef, data: dict[str, np.ndarray], source: str, name: str
) -> np.ndarray:
    storage = ref.storage
    base_offset = 0
    key = storage.key
    if storage.view_of is not None:
        key, base_offset = storage.view_of
    flat = data.get(key)
    if flat is None:
        raise CheckpointError(f"{source}: tensor {name} refers to missing storage {key}")
    offset = base_offset + ref.offset
    if ref.size:
        last = offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride) if n > 0)
        if min(ref.size) > 0 and (last >= flat.size or offset < 0 or min(ref.stride) < 0):
            raise CheckpointError(f"{source}: tensor {name} lies outside its storage")
    elif offset >= flat.size:
        raise CheckpointError(f"{source}: tensor {name} lies outside its storage")
    strides = tuple(s * flat.itemsize for s in ref.stride)
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=ref.size, strides=strides, writeable=False
    )
    return np.array(view, order="C", copy=True)
