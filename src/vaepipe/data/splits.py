"""The normalized splits the stages after `normalize` read, and binarized MNIST."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from vaepipe.errors import UserError
from vaepipe.data.tensorfile import storage_offset

# binarized once with a fixed seed, whatever params.seed: every run is scored on the same bits
BINARIZE_ONCE_SEED = {"train": 2, "test": 3}


def load_split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (bytes, [N, pixels]) and labels the normalize stage saved
    (`tensorfile.write_arrays`)."""
    split = _mapped(path)
    return split["images"], split["labels"]


RESIDENT_BYTES = 1 << 30  # a split's images up to this size are held whole; larger ones are read a batch at a time


class StoredImages:
    """A saved split's images read from its file a batch at a time, never mapped whole (a
    mapped file's pages count in a process's memory once read): the training loop's
    indexing, `index_select(0, rows)` and `[start:stop]`, each answered by reads of just
    those rows, as bytes on `device`."""

    def __init__(self, path: Path, device: torch.device | str = "cpu"):
        self.path, self.device = Path(path), torch.device(device)
        self.shape = _mapped(path)["images"].shape
        self.row_bytes = self.shape[1]
        self.offset = storage_offset(self.path, "0")  # the normalize stage writes the images first
        if os.path.getsize(self.path) < self.offset + self.shape[0] * self.row_bytes:
            raise UserError(f"{self.path}: not a split the normalize stage wrote; run `dvc repro normalize --force`")
        self.file = open(self.path, "rb")  # noqa: SIM115 - held while the run reads batches

    def __len__(self) -> int:
        return self.shape[0]

    def is_floating_point(self) -> bool:
        return False

    def to(self, device: torch.device | str) -> StoredImages:
        return StoredImages(self.path, device)

    def _read(self, rows) -> torch.Tensor:
        descriptor, size = self.file.fileno(), self.row_bytes
        data = bytearray(b"".join(os.pread(descriptor, size, self.offset + int(row) * size) for row in rows))
        return torch.frombuffer(data, dtype=torch.uint8).view(len(rows), size).to(self.device)

    def index_select(self, dim: int, rows: torch.Tensor) -> torch.Tensor:
        return self._read(rows.cpu().numpy())

    def __getitem__(self, rows: slice) -> torch.Tensor:
        start, stop, step = rows.indices(len(self))
        if step != 1:
            return self._read(range(start, stop, step))
        count = max(0, stop - start)
        data = bytearray(os.pread(self.file.fileno(), count * self.row_bytes, self.offset + start * self.row_bytes))
        return torch.frombuffer(data, dtype=torch.uint8).view(count, self.row_bytes).to(self.device) if count \
            else torch.empty(0, self.row_bytes, dtype=torch.uint8, device=self.device)


def training_images(path: Path, device: torch.device, drawn_once: bool) -> torch.Tensor | StoredImages:
    """The split the training loop reads: held whole on `device` when it is at most
    RESIDENT_BYTES or is binarized once (`as_modelled` draws over the whole split), else
    read from its file a batch at a time."""
    if split_bytes(path) <= RESIDENT_BYTES or drawn_once:
        return load_split(path)[0].to(device)
    return StoredImages(path, device)


def split_bytes(path: Path) -> int:
    """The bytes of a saved split's images, without reading them."""
    return int(np.prod(split_shape(path)))


def _mapped(path: Path) -> dict[str, torch.Tensor]:
    """A saved split memory-mapped, copy-on-write: only the rows used are ever read, straight
    from the page cache (a tenth of the time of reading the whole archive into fresh memory)."""
    return torch.load(path, weights_only=True, mmap=True)


def first_images(path: Path, count: int) -> torch.Tensor:
    """The first `count` images of a saved split."""
    return _mapped(path)["images"][:count]


def split_length(path: Path) -> int:
    """The number of images in a saved split, without reading them (for memory checks)."""
    return len(_mapped(path)["labels"])


def split_shape(path: Path) -> tuple[int, int]:
    """(images, pixels per image) of a saved split, without reading them."""
    images, pixels = _mapped(path)["images"].shape
    return images, pixels


def unit(x: torch.Tensor) -> torch.Tensor:
    """Stored bytes as the model's float32 in [0, 1], byte / 255 (floats pass as they are):
    splits keep a byte a pixel, and each batch is converted where it is used."""
    return x if x.is_floating_point() else x.to(torch.float32) / 255


def binarize(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Every pixel drawn anew as Bernoulli(x): 1 with probability x, else 0 (mean x)."""
    u = torch.rand(x.shape, generator=generator, device=generator.device)
    return (u.to(x.device) < x).to(x.dtype)


def as_modelled(x: torch.Tensor, split: str, mode: str) -> torch.Tensor:
    """A split as the model sees it under `data.binarize`: the test set is binarized once
    unless `none`; the training set once only when `static` (`dynamic` draws each batch).
    Bytes stay bytes (0 or 255 where binarized), floats floats."""
    if mode == "none" or (split == "train" and mode == "dynamic"):
        return x
    # drawn on the CPU whatever x's device: the same bits on a laptop and on a GPU box
    drawn = binarize(unit(x), torch.Generator().manual_seed(BINARIZE_ONCE_SEED[split]))
    return drawn if x.is_floating_point() else drawn.mul(255).to(torch.uint8)
