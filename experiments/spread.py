"""How far training itself moves the default run's metrics: the default pipeline on the whole
MNIST with seeds 1…N, each a `dvc repro evaluate latent` in a fresh clone of this checkout
(one DVC cache for all, so the data and the scoring classifier are made once). Writes
docs/spread.json: each metric's value per seed, mean, standard deviation and range, and the
machine that measured them. tests/test_fidelity.py takes its tolerance across machines from it.

    python experiments/spread.py [--mnist FOLDER] [--seeds 5] [--out docs/spread.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
from support import find_mnist  # noqa: E402
from vaepipe.atomic import write_json  # noqa: E402
from vaepipe.fingerprint import machine  # noqa: E402
from vaepipe.params import dotted  # noqa: E402

METRICS_FILES = ("train", "eval", "latent")  # the classifier has a seed of its own: no seed here moves it


def run(folder: Path, seed: int, mirror: Path, cache: Path) -> dict[str, float]:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(folder)], check=True)
    subprocess.run(["git", "config", "core.analytics", "false"], cwd=folder, check=True)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["seed"] = seed
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, VAEPIPE_MIRROR=str(mirror), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    subprocess.run(["dvc", "cache", "dir", "--local", str(cache)], cwd=folder, env=env, check=True)
    done = subprocess.run(["dvc", "repro", "evaluate", "latent"], cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"seed {seed}: dvc repro failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    found = {}
    for name in METRICS_FILES:
        found |= dotted(json.loads((folder / "metrics" / f"{name}.json").read_text()))
    return {key: value for key, value in found.items() if isinstance(value, (int, float))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=find_mnist())
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "spread.json")
    args = parser.parse_args()
    if args.mnist is None:
        raise SystemExit("error: the whole MNIST not found: pass --mnist FOLDER (the four .gz files)")
    per_seed = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, args.seeds + 1):
            per_seed[seed] = run(Path(tmp) / f"seed-{seed}", seed, args.mnist, Path(tmp) / "cache")
            print(f"# seed {seed}: test.loss {per_seed[seed]['test.loss']:.3f}", file=sys.stderr, flush=True)
    spread = {}
    for key in per_seed[1]:
        values = [per_seed[seed][key] for seed in per_seed]
        spread[key] = {"values": values, "mean": statistics.fmean(values), "std": statistics.stdev(values),
                       "range": max(values) - min(values)}
    write_json(args.out, {"seeds": list(per_seed), "machine": machine(), "metrics": spread})
    print(f"{'metric':<24} {'mean':>10} {'std':>8} {'range':>8}")
    for key, row in spread.items():
        print(f"{key:<24} {row['mean']:>10.4f} {row['std']:>8.4f} {row['range']:>8.4f}")


if __name__ == "__main__":
    main()
