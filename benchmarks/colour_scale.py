"""Splits that scale: generated colour pictures at side 64 (200 000 by default, CelebA's
size) through the normalize stage and one epoch of the train stage with `arch: conv`,
each stage run as `dvc repro` runs it, with its peak memory and its time per 10 000
images. The reference, measured in the same run: the bytes of the training split itself
(what a stage holding the split whole would need at the least; float32 splits, four times
that).

    python benchmarks/colour_scale.py [--images 200000] [--folder DIR] [--device auto]

Peak memory is the largest sum of resident bytes (mapped file pages included) of the
stage's process and its workers, sampled every 20 ms, or the kernel's high-water mark
of its main process where that is larger. The train stage's time includes its epoch
0 (the untrained model scored over both splits) and the test set scored after epoch 1.
The last line is `images=… normalize_peak_gb=… train_peak_gb=… split_gb=…
peak_over_split=… normalize_per_10k_s=… train_per_10k_s=…`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support import isa  # noqa: E402

SIDE = 64
GB = 1 << 30
PAGE = os.sysconf("SC_PAGE_SIZE")
CHUNK = 2000  # pictures a generating worker writes at a time

def pictures(start: int, count: int) -> np.ndarray:
    """`count` pictures [count, side, side, 3]: a gradient between two colours under a disc
    of a third, each drawn from the picture's own seed (its index)."""
    out = np.empty((count, SIDE, SIDE, 3), np.uint8)
    ramp = np.linspace(0, 1, SIDE)[None, :, None]
    yy, xx = np.mgrid[:SIDE, :SIDE]
    for i in range(count):
        rng = np.random.default_rng(start + i)
        a, b, ink = rng.integers(0, 256, (3, 3))
        picture = a * (1 - ramp) + b * ramp + np.zeros((SIDE, 1, 1))
        cy, cx, radius = rng.integers(12, 52, 2).tolist() + [int(rng.integers(6, 20))]
        picture[(yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] = ink
        out[i] = picture.astype(np.uint8)
    return out


def write_chunk(job: tuple[Path, int, int]) -> None:
    from PIL import Image

    folder, start, count = job
    for i, picture in enumerate(pictures(start, count)):
        Image.fromarray(picture).save(folder / f"{start + i:06d}.png", compress_level=1)


def generated(folder: Path, images: int) -> Path:
    """The folder of `images` pictures, written across the cores unless already there."""
    if folder.is_dir() and sum(1 for _ in folder.iterdir()) == images:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    jobs = [(folder, start, min(CHUNK, images - start)) for start in range(0, images, CHUNK)]
    with multiprocessing.get_context("fork").Pool(len(os.sched_getaffinity(0))) as pool:
        pool.map(write_chunk, jobs)
    return folder


def tree_bytes(session: int) -> int:
    """The resident bytes of every process of `session` (a stage and its workers) now."""
    total = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) == session:
                total += int((entry / "statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue  # it exited meanwhile
    return total


def run_stage(stage: str, workdir: Path, env: dict) -> tuple[float, int]:
    """(seconds, peak bytes) of one stage script run in `workdir` as `dvc repro` runs it:
    the larger of its process tree's resident bytes sampled every 20 ms and the kernel's
    high-water mark of its largest process."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "stages" / f"{stage}.py")], cwd=workdir, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    errors = []
    threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True).start()
    sampled = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        sampled = max(sampled, tree_bytes(process.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"the {stage} stage failed:\n{''.join(errors)[-2000:]}")
    return seconds, max(sampled, usage.ru_maxrss * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--folder", type=Path, default=None, help="where the pictures are written (and reused)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / "pictures"
        start = time.perf_counter()
        generated(folder, args.images)
        print(f"{args.images} pictures at side {SIDE} in {folder} ({time.perf_counter() - start:.0f} s)")
        workdir = Path(tmp) / "project"
        workdir.mkdir()
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params |= {"arch": "conv", "epochs": 1}
        params["data"] |= {"dataset": "folder", "path": str(folder), "side": SIDE, "channels": 3}
        params["train"] |= {"device": args.device, "checkpoint_every": 0}
        params["project"]["epochs"] = [0, 1]
        (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = os.environ | {"PYTHONPATH": str(ROOT / "src"), "TQDM_DISABLE": "1",
                            "VAEPIPE_CHECKPOINTS": str(Path(tmp) / "checkpoints")}
        normalize_s, normalize_peak = run_stage("normalize", workdir, env)
        split = os.path.getsize(workdir / "data" / "normalized" / "train.pt")
        print(f"normalize: {normalize_s:.0f} s, peak {normalize_peak / GB:.2f} GB; training split {split / GB:.2f} GB")
        train_s, train_peak = run_stage("train", workdir, env)
        trained = json.loads((workdir / "metrics" / "data.json").read_text())["data"]["train"]
        print(f"train (one epoch): {train_s:.0f} s, peak {train_peak / GB:.2f} GB")
    print(f"images={args.images} normalize_peak_gb={normalize_peak / GB:.2f} train_peak_gb={train_peak / GB:.2f} "
          f"split_gb={split / GB:.2f} peak_over_split={max(normalize_peak, train_peak) / split:.2f} "
          f"normalize_per_10k_s={normalize_s / args.images * 1e4:.1f} train_per_10k_s={train_s / trained * 1e4:.1f} "
          f"isa={isa()}")


if __name__ == "__main__":
    main()
