"""What a data set is on disk: four IDX files, a training and a test split, 28 × 28 images
(a folder of images may have another side); each pixel a byte, which the pipeline reads as
byte / 255.

Free of PyTorch, like the rest of what the download stage imports: fetching and checking
the files costs no torch import, the largest part of a stage's start-up.
"""

import json
import math
from pathlib import Path

import numpy as np

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


def side_of(pixels: int) -> int:
    """The side of a square image of `pixels` pixels."""
    return math.isqrt(pixels)


def unit_floats(images: np.ndarray) -> np.ndarray:
    """Bytes as float32 in [0, 1], [N, side²]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)
