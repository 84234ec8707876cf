"""What a data set is on disk: four IDX files, a training and a test split, 28 × 28 images.

Free of PyTorch, like the rest of what the download stage imports: fetching and checking
the files costs no torch import (a second and 500 MB).
"""

SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FILES = [name for pair in SPLITS.values() for name in pair]
SIDE = 28
PIXELS = SIDE * SIDE
