"""The normalized splits the stages after `normalize` read, and binarized MNIST."""

from __future__ import annotations

from pathlib import Path

import torch

# binarized once with a fixed seed, whatever params.seed: every run is scored on the same bits
BINARIZE_ONCE_SEED = {"train": 2, "test": 3}


def load_split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (bytes, [N, pixels]) and labels the normalize stage saved
    (`tensorfile.write_arrays`)."""
    split = _mapped(path)
    return split["images"], split["labels"]


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
