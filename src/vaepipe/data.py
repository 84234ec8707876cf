"""The data sets' shape and the normalized splits the stages after `normalize` read."""

from __future__ import annotations

from pathlib import Path

import torch

from vaepipe.atomic import write_tensors

SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FILES = [name for pair in SPLITS.values() for name in pair]
SIDE = 28
PIXELS = SIDE * SIDE


def save_split(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    write_tensors(path, {"images": images, "labels": labels})


def load_split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    split = torch.load(path, weights_only=True)
    return split["images"], split["labels"]


def split_length(path: Path) -> int:
    """The number of images in a saved split, memory-mapped, not read (for memory checks)."""
    return len(torch.load(path, weights_only=True, mmap=True)["labels"])
