"""Stage normalize: data/raw/ (IDX) or data.path (a folder of images) -> data/normalized/
{train,test}.pt (bytes [N, channels·side²], a quarter of float32's) and metrics/data.json, what was used and skipped."""

import sys
from pathlib import Path

from vaepipe.atomic import atomic_path, write_json
from vaepipe.stage import require, run_stage
from vaepipe.data.folder import read_folder
from vaepipe.data.idx import read_split
from vaepipe.layout import DIGITS, SPLITS
from vaepipe.outputs import CLASSES, DATA_REPORT, FILES_USED, NORMALIZED, RAW
from vaepipe.data.tensorfile import write_arrays


def main(params):
    data = params.data
    if data.dataset == "folder":
        folder = read_folder(Path(data.path), data.side, data.test_fraction, channels=data.channels)
        splits = {name: (folder.images(name), folder.labels[name]) for name in SPLITS}  # read as written
        classes, skipped = folder.classes, folder.skipped
    else:
        splits = {name: read_split(require(RAW, "download"), name) for name in SPLITS}
        folder, classes, skipped = None, DIGITS, []
    with atomic_path(NORMALIZED, directory=True) as tmp:
        for name, (images, labels) in splits.items():
            # read by `data.load_split`; written without PyTorch, whose import this stage skips
            write_arrays(tmp / f"{name}.pt", {"images": images, "labels": labels})
            print(f"{name}: {len(labels)} images", flush=True)
        if folder is not None:
            write_json(tmp / CLASSES.name, classes)
            write_json(tmp / FILES_USED.name, folder.files)
    write_json(DATA_REPORT, {"data": {**{name: len(labels) for name, (_, labels) in splits.items()},
                                                "classes": len(classes), "skipped": len(skipped)},
                                       "skipped": skipped})
    if skipped:
        print(f"skipped {len(skipped)} files that are not usable images: listed in {DATA_REPORT}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
