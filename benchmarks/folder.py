"""Converting a folder of images (`data.dataset: folder`): the whole MNIST written out as
70 000 PNGs (one sub-folder per digit), then read back by `vaepipe.data.folder.read_folder` in
one process and across every core, with the time per 10 000 images.

    python benchmarks/folder.py [--mnist ../shared/data/mnist]

The last line is `images=70000 serial_s=… parallel_s=… per_10k_s=… speedup=…`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
from support import isa, parse_with_mnist  # noqa: E402
from vaepipe.data.folder import PARALLEL_FROM, read_folder  # noqa: E402
from vaepipe.data.pngs import write_pngs  # noqa: E402


def timed(folder: Path, workers: int) -> float:
    start = time.perf_counter()
    data = read_folder(folder, 28, 0.1, workers=workers)
    seconds = time.perf_counter() - start
    assert sum(len(rows) for rows in data.rows.values()) > 0
    return seconds


def main() -> None:
    args = parse_with_mnist(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    cores = len(os.sched_getaffinity(0))
    os.environ.setdefault("TQDM_DISABLE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mnist"
        start = time.perf_counter()
        images = write_pngs(args.mnist, folder)
        print(f"wrote {images} PNGs in {time.perf_counter() - start:.1f} s")
        small = Path(tmp) / "small"  # at the threshold: is starting workers worth it there?
        write_pngs(args.mnist, small, first=PARALLEL_FROM // 2)
        small_serial, small_parallel = timed(small, 1), timed(small, cores)
        print(f"{PARALLEL_FROM} images: one process {small_serial:.2f} s, {cores} workers {small_parallel:.2f} s")
        serial, parallel = timed(folder, 1), timed(folder, cores)
    print(f"{images} images: one process {serial:.1f} s ({serial / images * 1e4:.2f} s per 10 000), "
          f"{cores} workers {parallel:.1f} s ({parallel / images * 1e4:.2f} s per 10 000)")
    print(f"images={images} serial_s={serial:.2f} parallel_s={parallel:.2f} "
          f"per_10k_s={parallel / images * 1e4:.2f} speedup={serial / parallel:.2f} isa={isa()}")


if __name__ == "__main__":
    main()
