"""The convolutional VAE against the notes' MLP at the same settings (params.yaml's: d = 20,
10 epochs, batch 256), on the whole MNIST and on Fashion-MNIST: each run a `dvc repro` in
a fresh clone of this checkout, its lines timestamped to time the train stage. Prints the
README's table (test.loss, test.iw_nll, test.bits_per_dim, samples.fd, train seconds).

    python experiments/architectures.py [--mnist FOLDER] [--fashion FOLDER] [--archs mlp conv]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support import find_mnist  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")
COLUMNS = ("test.loss", "test.iw_nll", "test.bits_per_dim", "samples.fd")


def run(folder: Path, dataset: str, arch: str, mirror: Path) -> dict:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(folder)], check=True)
    (folder / "node_modules").symlink_to(ROOT / "node_modules")  # the explorer's onnxruntime-web (make install)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["arch"], params["data"]["dataset"] = arch, dataset
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, VAEPIPE_MIRROR=str(mirror), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    started, log = {}, []
    with subprocess.Popen(["dvc", "repro"], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        for line in process.stdout:
            log.append(line)
            if line.startswith("Running stage '"):
                started[line.split("'")[1]] = time.monotonic()
        started["end"] = time.monotonic()
    if process.returncode != 0:
        raise SystemExit(f"{dataset} {arch}: dvc repro failed:\n{''.join(log[-20:])}")
    stages = list(started)
    train = started[stages[stages.index("train") + 1]] - started["train"]
    metrics = json.loads((folder / "metrics" / "eval.json").read_text())
    flat = {f"{group}.{key}": value for group, values in metrics.items() if isinstance(values, dict)
            for key, value in values.items()}
    return {**{name: flat.get(name) for name in COLUMNS}, "train s": train}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=find_mnist())
    parser.add_argument("--fashion", type=Path, default=FASHION)
    parser.add_argument("--archs", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, mirror in ((name, {"mnist": args.mnist, "fashion-mnist": args.fashion}[name])
                                for name in args.datasets):
            for arch in args.archs:
                result = run(Path(tmp) / f"{dataset}-{arch}", dataset, arch, mirror)
                rows.append((dataset, arch, result))
                print(f"# {dataset} {arch}: {result}", file=sys.stderr, flush=True)
    print("| data | arch | " + " | ".join(COLUMNS) + " | train s |")
    print("|---|---|" + "---|" * (len(COLUMNS) + 1))
    for dataset, arch, result in rows:
        print(f"| {dataset} | {arch} | " + " | ".join(f"{result[name]:.2f}" for name in COLUMNS)
              + f" | {result['train s']:.0f} |")


if __name__ == "__main__":
    main()
