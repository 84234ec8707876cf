"""What a data set is on disk: four IDX files, a training and a test split, 28 × 28 grey
images (a folder of images may have another side, and colour); each pixel a byte, stored as a byte in the
normalized splits and read as byte / 255 a batch at a time (`data.unit`).

Free of PyTorch, like the rest of what the download stage imports: fetching and checking
the files costs no torch import, the largest part of a stage's start-up.
"""

import json
import math
from pathlib import Path

SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FILES = [name for pair in SPLITS.values() for name in pair]
SIDE = 28
PIXELS = SIDE * SIDE
DIGITS = [str(k) for k in range(10)]  # the classes of the IDX data sets (Fashion-MNIST's too)


def class_names(path: Path) -> list[str]:
    """The data set's classes, label k named by entry k; [] when the images are unlabelled
    (their labels are then −1). `path` is the normalized data's classes file; absent, the
    classes are the IDX data sets' digits."""
    return json.loads(path.read_text()) if path.exists() else DIGITS


def image_shape(pixels: int) -> tuple[int, int]:
    """(channels, side) of a flat image of `pixels` values: side² grey, or 3·side² colour,
    the red plane, then green, then blue (no count is both: √3 is irrational). ValueError
    for any other count."""
    for channels in (1, 3):
        side = math.isqrt(pixels // channels)
        if pixels % channels == 0 and side * side * channels == pixels and side:
            return channels, side
    raise ValueError(f"{pixels} values are neither a square grey image nor a square colour one")


def side_of(pixels: int) -> int:
    """The side of a square image of `pixels` values, grey or colour."""
    return image_shape(pixels)[1]

