"""Stage normalize: data/raw/ -> data/normalized/{train,test}.pt (float32 [N, 784] in [0, 1])."""

from vaepipe.atomic import atomic_path
from vaepipe.cli import require, run_stage
from vaepipe.data import save_split
from vaepipe.idx import read_split
from vaepipe.layout import SPLITS
from vaepipe.paths import NORMALIZED, RAW


def main(params):
    splits = {name: read_split(require(RAW, "download"), name) for name in SPLITS}
    with atomic_path(NORMALIZED, directory=True) as tmp:
        for name, (images, labels) in splits.items():
            save_split(tmp / f"{name}.pt", images, labels)
            print(f"{name}: {len(images)} images", flush=True)


if __name__ == "__main__":
    run_stage(main)
