"""The tensor files this project writes (`atomic.write_tensors`: torch.save of a dict of
dense CPU tensors) read as numpy arrays without importing PyTorch, so that the stages that
only read codes and images (project, explore) skip its import: the largest part of their
start-up and memory.

torch.save writes a zip archive: `<root>/data.pkl` pickles the dict, each tensor as a call
of `torch._utils._rebuild_tensor_v2` on a storage that the pickle names by key, whose bytes
are the entry `<root>/data/<key>`. Like `torch.load(weights_only=True)`, the unpickler builds
only those tensors, their storages' types and dicts: a file that asks for anything else is
refused, never run.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from pathlib import Path

import numpy as np

from vaepipe.errors import UserError

# torch's storage types by the names the pickle gives them, as little-endian numpy types
STORAGE_TYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
                 "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
                 "BoolStorage": "?"}


class _StorageType(str):
    """A storage type named in the pickle: the numpy type of its elements."""


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_) -> np.ndarray:
    """A tensor of `size` read from `storage` at element `offset` with `stride`, as its own array."""
    if size and min(size) == 0:
        return np.empty(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    # each element read once, all inside the storage: nothing larger than the file is allocated
    if offset < 0 or min(stride, default=1) < 1 or last >= len(storage) or math.prod(size) > len(storage):
        raise pickle.UnpicklingError(f"a tensor of size {tuple(size)} lies outside its storage")
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[s * item for s in stride],
                                           writeable=False)
    return view.copy(order="C")


class _TensorUnpickler(pickle.Unpickler):
    def __init__(self, archive: zipfile.ZipFile, root: str):
        super().__init__(io.BytesIO(archive.read(f"{root}data.pkl")))
        self.archive, self.root = archive, root

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in STORAGE_TYPES:
            return _StorageType(STORAGE_TYPES[name])
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which no tensor file holds")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"an unknown record {kind!r}")
        storage = np.frombuffer(self.archive.read(f"{self.root}data/{key}"), dtype=storage_type)
        if len(storage) != numel:
            raise pickle.UnpicklingError(f"storage {key} holds {len(storage)} elements, not {numel}")
        return storage


def read_tensors(path: Path, stage: str) -> dict[str, np.ndarray]:
    """The dict of tensors saved at `path`, each as a numpy array; a file that is not one
    (damaged, or not written by this project) stops with one line naming `stage`, which
    writes it."""
    try:
        with zipfile.ZipFile(path) as archive:
            if any(entry.compress_type != zipfile.ZIP_STORED for entry in archive.infolist()):
                raise pickle.UnpicklingError("it is compressed; torch.save stores")  # no entry outgrows the file
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise pickle.UnpicklingError("it holds no data.pkl")
            root = pickles[0][:-len("data.pkl")]
            if archive.read(f"{root}byteorder") != b"little":
                raise pickle.UnpicklingError("it was written on a big-endian machine")
            tensors = _TensorUnpickler(archive, root).load()
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as error:
        raise UserError(f"{path} is not a tensor file this project wrote ({str(error)[:120]}); "
                        f"run `dvc repro {stage} --force` to write it again") from None
    if not isinstance(tensors, dict) or not all(isinstance(value, np.ndarray) for value in tensors.values()):
        raise UserError(f"{path} holds no dict of tensors; run `dvc repro {stage} --force` to write it again")
    return tensors

