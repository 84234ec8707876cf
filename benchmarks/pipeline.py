"""Wall time, peak memory and share of every stage of the default pipeline on the whole
MNIST, run one stage at a time (`dvc repro -s`) from a clean workspace, then a `dvc repro`
with nothing to do. The project is copied into a temporary git repository with only
`data.mirror` changed, so the real checksum path runs.

    python benchmarks/pipeline.py [--mnist ../shared/data/mnist]

The last line is `total_s=… download_s=… … noop_s=… peak_gb=…`.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import BIN, make_repo, parse_with_mnist, stage_env  # noqa: E402
from test_pipeline import STAGES  # noqa: E402

# runs a command and reports the peak RSS of its whole process tree (Linux propagates it up)
MEASURE = ("import resource, subprocess, sys\n"
           "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
           "sys.exit(code)\n")


def timed(repo: Path, *args: str) -> tuple[float, int]:
    """Seconds and peak bytes of one `dvc` command."""
    env = stage_env()
    env.pop("PYTHONPATH")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", MEASURE, str(BIN / "dvc"), *args], cwd=repo,
                            env=env, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"dvc {' '.join(args)} failed:\n{result.stderr}")
    return seconds, int(result.stderr.split()[-1]) * 1024


def main() -> None:
    args = parse_with_mnist(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "repo", str(args.mnist.resolve()), dataset="mnist", fast=False)
        results = {stage: timed(repo, "repro", "-s", stage) for stage in STAGES}
        noop, _ = timed(repo, "repro")
    total = sum(seconds for seconds, _ in results.values())
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, data {args.mnist}")
    print(f"{'stage':<12}{'wall s':>8}{'peak MB':>9}{'share':>8}")
    for stage, (seconds, peak) in results.items():
        print(f"{stage:<12}{seconds:8.1f}{peak / 2**20:9.0f}{seconds / total:8.0%}")
    peak = max(peak for _, peak in results.values())
    print(f"{'total':<12}{total:8.1f}{peak / 2**20:9.0f}")
    print(f"{'no-op repro':<12}{noop:8.1f}")
    print(" ".join([f"total_s={total:.1f}"] + [f"{stage}_s={seconds:.1f}" for stage, (seconds, _) in results.items()]
                   + [f"noop_s={noop:.1f}", f"peak_gb={peak / 2**30:.2f}"]))


if __name__ == "__main__":
    main()
