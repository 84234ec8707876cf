"""The IDX format of MNIST's files: read (streamed, bounded by the header), write, check.

A file is trusted no further than its header: the header's counts are checked against the
format and the machine's memory before anything is allocated, and a body longer than the
header promises (a gzip bomb) is refused after reading one byte past the promise.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from vaepipe.atomic import atomic_path
from vaepipe.layout import SIDE, SPLITS
from vaepipe.errors import UserError
from vaepipe.resources import available_memory, size

IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801
READ_BYTES = 1 << 20
FIX = "delete data/raw and run `dvc repro download`"


def _header(stream, path: Path, magic: int, dims: int) -> tuple[int, ...]:
    header = stream.read(4 + 4 * dims)
    if len(header) < 4 or struct.unpack(">I", header[:4])[0] != magic:
        found = f"0x{struct.unpack('>I', header[:4])[0]:08x}" if len(header) >= 4 else "nothing"
        raise UserError(f"{path}: not an IDX file of {'images' if dims == 3 else 'labels'} "
                        f"(magic number {found}, expected 0x{magic:08x})")
    if len(header) < 4 + 4 * dims:
        raise UserError(f"{path} is truncated inside its header; {FIX}")
    shape = struct.unpack(f">{dims}I", header[4:])
    if dims == 3 and shape[1:] != (SIDE, SIDE):
        raise UserError(f"{path}: images are {shape[1]}x{shape[2]}, expected {SIDE}x{SIDE}")
    promised = math.prod(shape)
    if promised > available_memory() // 2:  # read_split holds the bytes, and normalize writes them
        raise UserError(f"{path}: its header claims {shape[0]} {'images' if dims == 3 else 'labels'} "
                        f"({size(promised)}), far more than this machine can hold; not a usable data set")
    return shape


def _body(stream, path: Path, shape: tuple[int, ...], keep: bool) -> np.ndarray | None:
    """Exactly the promised bytes, streamed; refused when the file holds fewer or more."""
    promised = math.prod(shape)
    body = np.empty(promised if keep else min(promised, READ_BYTES), dtype=np.uint8)
    view, read = memoryview(body), 0
    while read < promised:
        part = view[read:] if keep else view[: min(READ_BYTES, promised - read)]
        got = stream.readinto(part)
        if not got:
            raise UserError(f"{path} is truncated: header promises {promised} bytes, found {read}; {FIX}")
        read += got
    if stream.read(1):
        raise UserError(f"{path} decompresses to more than the {promised} bytes its header "
                        f"promises: refused (a damaged or hostile file); {FIX}")
    return body.reshape(shape) if keep else None


def _stream(path: Path, magic: int, dims: int, keep: bool) -> np.ndarray | None:
    try:
        with gzip.open(path, "rb") as stream:
            return _body(stream, path, _header(stream, path, magic, dims), keep)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{path} is corrupt ({error}): {FIX}") from None


def read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    return _stream(path, magic, dims, keep=True)


def check_idx(path: Path) -> None:
    """Stream through a fetched file, keeping nothing: its header and length must agree."""
    images = "images" in path.name
    _stream(path, IMAGE_MAGIC if images else LABEL_MAGIC, 3 if images else 1, keep=False)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write uint8 images [N, 28, 28] or labels [N] as an IDX .gz file (for custom data sets)."""
    magic = IMAGE_MAGIC if array.ndim == 3 else LABEL_MAGIC
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    with atomic_path(path) as tmp, gzip.GzipFile(tmp, "wb", mtime=0) as stream:
        stream.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def read_split(raw_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images as bytes [N, 784], labels as int64 [N]."""
    images_name, labels_name = SPLITS[split]
    images = read_idx(raw_dir / images_name, IMAGE_MAGIC, 3)
    labels = read_idx(raw_dir / labels_name, LABEL_MAGIC, 1)
    if len(images) != len(labels):
        raise UserError(f"{split} split: {len(images)} images but {len(labels)} labels; "
                        "the two files must come from the same data set")
    if len(labels) and labels.max() > 9:
        raise UserError(f"{raw_dir / labels_name}: label {labels.max()} is out of range 0-9")
    return images.reshape(len(images), -1), labels.astype(np.int64)
