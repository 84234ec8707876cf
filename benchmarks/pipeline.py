"""Wall time, peak memory and share of every stage of the default pipeline on the whole
MNIST, as a user runs it: one `dvc repro` from a clean workspace, then a `dvc repro` with
nothing to do. The project is copied into a temporary git repository with only
`data.mirror` changed, so the real checksum path runs.

A stage's time runs from DVC announcing it ("Running stage …") to DVC announcing the next
(or exiting), so it holds the stage's process and DVC's hashing, caching and lock update
after it; DVC's own start-up before the first stage is a row of its own. A stage's peak is
its process's peak resident memory (VmHWM), read from /proc while it runs; the run's peak is
the largest that any process of the run reached (getrusage, exact).

The reference is the course notebook's own training recipe on the same files
(`--reference`, by default `shared/bench/notebook_recipe.py` beside the checkout), run just
before and just after the pipeline, so that both see the same machine; the ratio is the
pipeline's total over the mean of those two runs. A shared machine's speed drifts by 10–20 %
from one minute to the next: `--repeats N` runs the pipeline N times, each in a fresh
repository between two runs of the reference (N + 1 of them in all), and prints each
stage's median, the median ratio and the range of the N ratios.

    python benchmarks/pipeline.py [--mnist ../shared/data/mnist] [--reference notebook_recipe.py] [--repeats N]

The last line is `total_s=… dvc_start_s=… download_s=… … noop_s=… peak_gb=… reference_s=… ratio=…`
(without the last two when there is no reference), then `ratio_range=…` when N > 1.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
from support import BIN, isa, make_repo, parse_with_mnist, stage_env  # noqa: E402

# runs a command and reports the peak RSS of its whole process tree (Linux propagates it up)
MEASURE = ("import resource, subprocess, sys\n"
           "code = subprocess.run(sys.argv[1:]).returncode\n"
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
           "sys.exit(code)\n")
ANNOUNCED = re.compile(r"Running stage '([^']+)'")
STAGE_PROCESS = re.compile(rb"stages/(\w+)\.py")


def measured(folder: Path, *command: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    env = stage_env()
    env.pop("PYTHONPATH")
    return subprocess.Popen([sys.executable, "-c", MEASURE, *command], cwd=folder, env=env,
                            stdout=stdout, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen, command: tuple[str, ...]) -> int:
    """The peak bytes of a finished measured command; exits when it failed."""
    stderr = process.stderr.read()
    if process.wait() != 0:
        sys.exit(f"{' '.join(command)} failed:\n{stderr}")
    return int(stderr.split()[-1]) * 1024


def timed(folder: Path, *command: str) -> tuple[float, int]:
    """Seconds and peak bytes of one command (its output discarded)."""
    start = time.perf_counter()
    process = measured(folder, *command)
    peak = finished(process, command)
    return time.perf_counter() - start, peak


def descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        try:
            for task in Path(f"/proc/{parent}/task").iterdir():
                children = [int(child) for child in (task / "children").read_text().split()]
                found += children
                queue += children
        except OSError:  # it exited meanwhile
            pass
    return found


def watch_stage_peaks(pid: int, peaks: dict[str, int], done: threading.Event) -> None:
    """Record, every 20 ms, each stage process's peak resident memory so far."""
    while not done.wait(0.02):
        for child in descendants(pid):
            try:
                stage = STAGE_PROCESS.search(Path(f"/proc/{child}/cmdline").read_bytes())
                if stage:
                    status = Path(f"/proc/{child}/status").read_text()
                    hwm = int(status.split("VmHWM:")[1].split()[0]) * 1024
                    name = stage.group(1).decode()
                    peaks[name] = max(peaks.get(name, 0), hwm)
            except (OSError, IndexError):
                pass


def repro(folder: Path) -> tuple[dict[str, float], dict[str, int], int]:
    """One `dvc repro`: the seconds of DVC's start-up and of each stage, each stage's peak
    bytes, and the run's peak bytes."""
    command = (str(BIN / "dvc"), "repro")
    start = time.perf_counter()
    process = measured(folder, *command, stdout=subprocess.PIPE)
    peaks, done = {}, threading.Event()
    watcher = threading.Thread(target=watch_stage_peaks, args=(process.pid, peaks, done))
    watcher.start()
    announced = [("dvc start-up", start)]
    for line in process.stdout:
        if match := ANNOUNCED.match(line):
            announced.append((match.group(1), time.perf_counter()))
    peak = finished(process, command)
    end = time.perf_counter()
    done.set()
    watcher.join()
    ends = [moment for _, moment in announced[1:]] + [end]
    seconds = {name: stop - begin for (name, begin), stop in zip(announced, ends)}
    return seconds, peaks, peak


def default_reference() -> Path | None:
    found = [parent / "shared" / "bench" / "notebook_recipe.py" for parent in ROOT.parents]
    return next((path for path in found if path.exists()), None)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of runs, 1 or more, got {text!r}")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=default_reference(),
                        help="the notebook's recipe: a script taking the MNIST folder")
    parser.add_argument("--repeats", type=positive, default=1,
                        help="pipeline runs, each from a clean workspace and between two runs of the reference")
    args = parse_with_mnist(parser)
    mnist = args.mnist.resolve()
    reference = [] if args.reference is None else [sys.executable, str(args.reference.resolve()), str(mnist)]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        references = [timed(Path(tmp), *reference)] if reference else []
        for round_ in range(args.repeats):
            repo = make_repo(Path(tmp) / f"repo{round_}", str(mnist), dataset="mnist", fast=False)
            runs.append(repro(repo))
            if round_ == 0:
                noop, _ = timed(repo, str(BIN / "dvc"), "repro")
            if reference:
                references.append(timed(repo, *reference))
            shutil.rmtree(repo)
    # each stage's median over the runs; a round's ratio is its total over the reference runs beside it
    totals = [sum(seconds.values()) for seconds, _, _ in runs]
    seconds = {stage: statistics.median(run[0][stage] for run in runs) for stage in runs[0][0]}
    peaks = {stage: max(run[1].get(stage, 0) for run in runs) for stage in seconds}
    total, peak = statistics.median(totals), max(run[2] for run in runs)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, data {args.mnist}"
          + (f"; medians of {args.repeats} runs" if args.repeats > 1 else ""))
    print(f"{'stage':<13}{'wall s':>8}{'peak MB':>9}{'share':>8}")
    for stage, wall in seconds.items():
        shown = f"{peaks[stage] / 2**20:9.0f}" if peaks[stage] else f"{'':9}"
        print(f"{stage:<13}{wall:8.1f}{shown}{wall / total:8.0%}")
    print(f"{'total':<13}{total:8.1f}{peak / 2**20:9.0f}"
          + (f"   runs: {', '.join(f'{t:.1f}' for t in totals)} s" if len(totals) > 1 else ""))
    print(f"{'no-op repro':<13}{noop:8.1f}")
    summary = ([f"total_s={total:.1f}"]
               + [f"{stage.replace('dvc start-up', 'dvc_start')}_s={wall:.1f}" for stage, wall in seconds.items()]
               + [f"noop_s={noop:.1f}", f"peak_gb={peak / 2**30:.2f}"])
    if reference:
        walls = [wall for wall, _ in references]
        beside = [(before + after) / 2 for before, after in zip(walls, walls[1:])]
        ratios = [pipeline / mean for pipeline, mean in zip(totals, beside)]
        print(f"{'reference':<13}{statistics.median(walls):8.1f}{max(p for _, p in references) / 2**20:9.0f}"
              f"   the notebook's recipe (runs: {', '.join(f'{wall:.1f}' for wall in walls)} s, "
              "before, between and after the pipeline's)")
        summary += [f"reference_s={statistics.median(walls):.1f}", f"ratio={statistics.median(ratios):.2f}"]
        if len(ratios) > 1:
            summary.append(f"ratio_range={min(ratios):.2f}–{max(ratios):.2f}")
    else:
        print("no reference: pass --reference notebook_recipe.py for the ratio")
    print(" ".join([*summary, f"isa={isa()}"]))


if __name__ == "__main__":
    main()
