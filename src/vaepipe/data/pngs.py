"""An IDX data set (the four .gz files) written out as a folder of PNGs, in the layout that
`data.dataset: folder` reads: train/ and test/, one sub-folder per label, files named by
their index, so the folder gives back the same images in the same order.

    python -m vaepipe.data.pngs /usr/share/datasets/fashion-mnist images/fashion-mnist
"""

from __future__ import annotations

import sys
from pathlib import Path

from vaepipe.errors import UserError
from vaepipe.data.idx import IMAGE_MAGIC, LABEL_MAGIC, read_idx
from vaepipe.layout import SPLITS


def write_pngs(raw_dir: Path, out: Path, *, first: int | None = None) -> int:
    """Every image of both splits (or the first `first` of each) as a PNG; how many."""
    from PIL import Image

    written = 0
    for split, (images_name, labels_name) in SPLITS.items():
        images = read_idx(raw_dir / images_name, IMAGE_MAGIC, 3)[:first]
        labels = read_idx(raw_dir / labels_name, LABEL_MAGIC, 1)[:first]
        for label in set(labels.tolist()):
            (out / split / str(label)).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(out / split / str(label) / f"{i:05d}.png")
        written += len(images)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m vaepipe.data.pngs FOLDER_WITH_THE_FOUR_IDX_GZ_FILES OUT_FOLDER", file=sys.stderr)
        return 2
    try:
        count = write_pngs(Path(argv[0]), Path(argv[1]))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"wrote {count} PNGs under {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
