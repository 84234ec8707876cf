"""Wall time, peak memory and share of every stage of the default pipeline on the whole
MNIST, run one stage at a time (`dvc repro -s`) from a clean workspace, then a `dvc repro`
with nothing to do. The project is copied into a temporary git repository with only
`data.mirror` changed, so the real checksum path runs.

The reference is the course notebook's own training recipe on the same files
(`--reference`, by default `shared/bench/notebook_recipe.py` beside the checkout), run just
before and just after the pipeline, so that both see the same machine; the ratio is the
pipeline's total over the mean of its two runs.

    python benchmarks/pipeline.py [--mnist ../shared/data/mnist] [--reference notebook_recipe.py]

The last line is `total_s=… download_s=… … noop_s=… peak_gb=… reference_s=… ratio=…`
(without the last two when there is no reference).
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
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
from conftest import BIN, make_repo, parse_with_mnist, stage_env  # noqa: E402
from test_pipeline import STAGES  # noqa: E402

# runs a command and reports the peak RSS of its whole process tree (Linux propagates it up)
MEASURE = ("import resource, subprocess, sys\n"
           "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
           "sys.exit(code)\n")


def timed(folder: Path, *command: str) -> tuple[float, int]:
    """Seconds and peak bytes of one command (its output discarded)."""
    env = stage_env()
    env.pop("PYTHONPATH")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", MEASURE, *command], cwd=folder,
                            env=env, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds, int(result.stderr.split()[-1]) * 1024


def default_reference() -> Path | None:
    found = [parent / "shared" / "bench" / "notebook_recipe.py" for parent in ROOT.parents]
    return next((path for path in found if path.exists()), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=default_reference(),
                        help="the notebook's recipe: a script taking the MNIST folder")
    args = parse_with_mnist(parser)
    mnist = args.mnist.resolve()
    reference = [] if args.reference is None else [sys.executable, str(args.reference.resolve()), str(mnist)]
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "repo", str(mnist), dataset="mnist", fast=False)
        before = timed(repo, *reference) if reference else None
        results = {stage: timed(repo, str(BIN / "dvc"), "repro", "-s", stage) for stage in STAGES}
        noop, _ = timed(repo, str(BIN / "dvc"), "repro")
        after = timed(repo, *reference) if reference else None
    total = sum(seconds for seconds, _ in results.values())
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, data {args.mnist}")
    print(f"{'stage':<12}{'wall s':>8}{'peak MB':>9}{'share':>8}")
    for stage, (seconds, peak) in results.items():
        print(f"{stage:<12}{seconds:8.1f}{peak / 2**20:9.0f}{seconds / total:8.0%}")
    peak = max(peak for _, peak in results.values())
    print(f"{'total':<12}{total:8.1f}{peak / 2**20:9.0f}")
    print(f"{'no-op repro':<12}{noop:8.1f}")
    summary = ([f"total_s={total:.1f}"] + [f"{stage}_s={seconds:.1f}" for stage, (seconds, _) in results.items()]
               + [f"noop_s={noop:.1f}", f"peak_gb={peak / 2**30:.2f}"])
    if reference:
        seconds = (before[0] + after[0]) / 2
        print(f"{'reference':<12}{seconds:8.1f}{max(before[1], after[1]) / 2**20:9.0f}"
              f"   the notebook's recipe ({before[0]:.1f} s before the pipeline, {after[0]:.1f} s after)")
        summary += [f"reference_s={seconds:.1f}", f"ratio={total / seconds:.2f}"]
    else:
        print("no reference: pass --reference notebook_recipe.py for the ratio")
    print(" ".join(summary))


if __name__ == "__main__":
    main()
