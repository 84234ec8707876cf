"""Where each stage writes, relative to the project root (dvc.yaml names the same paths)."""

from pathlib import Path

RAW = Path("data/raw")
NORMALIZED = Path("data/normalized")
MODEL = Path("models/model.pt")
SNAPSHOTS = Path("models/snapshots")
CLASSIFIER = Path("models/classifier.pt")
METRICS = Path("metrics")
MACHINE = METRICS / "machine.json"  # the train stage's machine fingerprint (vaepipe.fingerprint)
PLOTS = Path("plots")


DATA_REPORT = Path("metrics/data.json")  # the images used and the files skipped, git-tracked
CLASSES = NORMALIZED / "classes.json"  # written for a folder of images; absent: the digits 0-9
FILES_USED = NORMALIZED / "files.json"  # a folder of images: each split's files, size and SHA-256


def normalized(split: str) -> Path:
    return NORMALIZED / f"{split}.pt"


def snapshot(epoch: int) -> str:
    return f"epoch-{epoch:03d}.pt"
ONNX = Path("models/onnx")
MIXTURE = Path("models/mixture.json")
EXPLORER = Path("explorer")

# every folder a stage writes into: DVC deletes a stage's outputs before it runs, so the
# user's images (data.path) may neither lie in one nor hold one
OUTPUT_FOLDERS = (RAW, NORMALIZED, MODEL.parent, METRICS, PLOTS, EXPLORER)
