"""The tensor files this project writes (torch.save of a dict of dense CPU tensors) read as
numpy arrays, and a dict of arrays written as one, without importing PyTorch: the stages
that only read codes and images (project, explore) or only write images (normalize) skip
its import, the largest part of their start-up and memory.

torch.save writes a zip archive: `<root>/data.pkl` pickles the dict, each tensor as a call
of `torch._utils._rebuild_tensor_v2` on a storage that the pickle names by key, whose bytes
are the entry `<root>/data/<key>`. Like `torch.load(weights_only=True)`, the unpickler builds
only those tensors, their storages' types and dicts: a file that asks for anything else is
refused, never run. `write_arrays` writes what `torch.load` and `read_tensors` read, each
storage 64-byte aligned as torch.save aligns it (so that torch.load can map it, `mmap=True`).
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaepipe.errors import UserError

# torch's storage types by the names the pickle gives them, as little-endian numpy types
STORAGE_TYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
                 "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
                 "BoolStorage": "?"}
STORAGE_NAMES = {np.dtype(code): name for name, code in STORAGE_TYPES.items()}
ALIGNMENT = 64  # bytes: where torch.save starts each storage


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


def refuse_compressed(archive: zipfile.ZipFile) -> None:
    """UnpicklingError where an entry is compressed: torch.save stores every entry, and a
    compressed one could inflate far beyond the file's size (a 195 KB file to 192 MB) inside
    torch.load, before anything else is checked."""
    if any(entry.compress_type != zipfile.ZIP_STORED for entry in archive.infolist()):
        raise pickle.UnpicklingError("it is compressed; torch.save stores")


def read_tensors(path: Path, stage: str) -> dict[str, np.ndarray]:
    """The dict of tensors saved at `path`, each as a numpy array; a file that is not one
    (damaged, or not written by this project) stops with one line naming `stage`, which
    writes it."""
    try:
        with zipfile.ZipFile(path) as archive:
            refuse_compressed(archive)
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


@dataclass(frozen=True)
class Rows:
    """An array of `shape` and `dtype` given as its bytes in C order, a chunk at a time:
    what `write_arrays` writes without ever holding the whole array."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: Iterable[bytes]


def write_arrays(path: Path, arrays: dict[str, np.ndarray | Rows]) -> None:
    """`arrays` saved as torch.save saves the same dict of tensors, in a zip archive of
    stored entries under `archive/`: the same bytes for the same arrays, given whole or as
    `Rows`. Written in place: the caller writes it inside an atomic folder
    (`atomic.atomic_path`)."""
    # little-endian (the archive says so) and in C order; a copy only where they are not
    arrays = {name: array if isinstance(array, Rows) else array.astype(array.dtype.newbyteorder("<"), order="C",
                                                                         copy=False)
              for name, array in arrays.items()}
    shapes = {name: (np.dtype(array.dtype), tuple(array.shape)) for name, array in arrays.items()}
    entries = [("data.pkl", [_pickled(shapes)]), ("byteorder", [b"little"])]
    entries += [(f"data/{key}", array.chunks if isinstance(array, Rows) else [memoryview(array.reshape(-1)).cast("B")])
                for key, array in enumerate(arrays.values())]
    entries.append(("version", [b"3\n"]))  # torch.save's format version
    sizes = {f"data/{key}": math.prod(shape) * dtype.itemsize for key, (dtype, shape) in enumerate(shapes.values())}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, chunks in entries:
            entry = zipfile.ZipInfo(f"archive/{name}")  # a fixed date (1980-01-01): equal arrays, equal bytes
            entry.create_system = 3  # as written on Unix, wherever it is
            chunks = list(chunks) if name not in sizes else chunks
            entry.file_size = sizes[name] if name in sizes else sum(len(chunk) for chunk in chunks)
            zip64 = entry.file_size * 1.05 > zipfile.ZIP64_LIMIT  # zipfile's own rule: 20 more header bytes
            # the local header is 30 bytes, the name, then extra fields: padding (4 bytes + padding), zip64's
            start = archive.fp.tell() + 30 + len(entry.filename.encode()) + 4 + 20 * zip64
            padding = -start % ALIGNMENT
            entry.extra = b"FB" + struct.pack("<H", padding) + b"Z" * padding  # torch's own padding field
            with archive.open(entry, "w", force_zip64=zip64) as stream:
                written = sum(stream.write(chunk) for chunk in chunks)
            if written != entry.file_size:
                raise ValueError(f"{name}: {written} bytes given for an array of {entry.file_size}")


def storage_offset(path: Path, key: str) -> int:
    """Where in the file the bytes of storage `key` begin (entries are stored, not compressed)."""
    with zipfile.ZipFile(path) as archive:
        entry = next(info for info in archive.infolist() if info.filename.endswith(f"/data/{key}"))
        archive.fp.seek(entry.header_offset)
        header = archive.fp.read(30)
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return entry.header_offset + 30 + name_length + extra_length


def _pickled(shapes: dict[str, tuple[np.dtype, tuple[int, ...]]]) -> bytes:
    """data.pkl, in pickle protocol 2 as torch.save writes it: the dict, each array a call of
    `torch._utils._rebuild_tensor_v2` on storage number i (written by hand: `pickle` would
    import torch to find the functions it names)."""
    def text(value: str) -> bytes:
        data = value.encode()
        return pickle.BINUNICODE + struct.pack("<I", len(data)) + data

    def integer(value: int) -> bytes:
        return pickle.LONG1 + bytes([8]) + struct.pack("<q", value)

    def named(module: str, name: str) -> bytes:
        return pickle.GLOBAL + f"{module}\n{name}\n".encode()

    def tuple_of(*items: bytes) -> bytes:
        return pickle.MARK + b"".join(items) + pickle.TUPLE

    def call(function: bytes, *args: bytes) -> bytes:
        return function + tuple_of(*args) + pickle.REDUCE

    items = []
    for key, (name, (dtype, shape)) in enumerate(shapes.items()):
        storage = tuple_of(text("storage"), named("torch", STORAGE_NAMES[dtype]), text(str(key)), text("cpu"),
                           integer(math.prod(shape))) + pickle.BINPERSID
        strides = [math.prod(shape[i + 1:]) for i in range(len(shape))]  # C order
        items.append(text(name) + call(named("torch._utils", "_rebuild_tensor_v2"), storage, integer(0),
                                       tuple_of(*map(integer, shape)), tuple_of(*map(integer, strides)),
                                       pickle.NEWFALSE, call(named("collections", "OrderedDict"))))
    return pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK + b"".join(items) + pickle.SETITEMS + pickle.STOP
