"""Burda, Grosse & Salakhutdinov (2016), Table 1: the VAE with one stochastic layer trained
with k = 1 on dynamically binarized MNIST, 86.76 nats with k = 5000. Their recipe through
the pipeline's own model, loss and training loop, with the test bound (k = 5000) after each
stage of their learning-rate schedule, so a run cut short still shows the curve.

    python experiments/burda.py [--stages 8] [--test-images 10000] [--mnist ../shared/data/mnist]

Their set-up, as params: d = 50, hidden [200, 200] tanh, Adam (0.9, 0.999, ε = 1e-4), batch
20, stage i = 3^i passes at 0.001 · 10^(−i/7). The full schedule (8 stages, 3280 passes) is
the same run as `dvc exp run -n burda-vae` with the params the README lists.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
from support import parse_with_mnist, set_params  # noqa: E402
from vaepipe.data.splits import as_modelled, unit  # noqa: E402
from vaepipe.data.idx import read_split  # noqa: E402
from vaepipe.evaluation.metrics import decoder_log_likelihood, encode_all, iw_nll  # noqa: E402
from vaepipe.params import load_params  # noqa: E402
from vaepipe.training.loop import fit, lr_at  # noqa: E402

RECIPE = dict(d=50, hidden=[200, 200], activation="tanh", train__batch_size=20, train__lr=0.001,
              train__adam_eps=1e-4, train__schedule="burda", data__binarize="dynamic", train__device="cpu")
PUBLISHED = 86.76


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=8, help="schedule stages to run (8 = all 3280 passes)")
    parser.add_argument("--test-images", type=int, default=10_000, help="the first test images the bound is on")
    parser.add_argument("--k", type=int, default=5000)
    args = parse_with_mnist(parser)
    ends = [sum(3 ** j for j in range(i + 1)) for i in range(args.stages)]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text((ROOT / "params.yaml").read_text())
        set_params(Path(tmp), epochs=ends[-1], **RECIPE)
        params = load_params(Path(tmp) / "params.yaml")
    train_x, test_x = (torch.from_numpy(read_split(args.mnist, split)[0]) for split in ("train", "test"))
    scored = unit(as_modelled(test_x, "test", "dynamic")[:args.test_images])  # binarized once, as every run
    start = time.perf_counter()
    print(f"stage  passes  lr        bound (k = {args.k}, {len(scored)} test images)  gap to {PUBLISHED}  minutes")

    def after_epoch(history, model) -> None:
        epoch = history.rows[-1]["epoch"]
        if epoch not in ends:
            return
        mu, logvar = encode_all(model, scored)
        bound = iw_nll(decoder_log_likelihood(model, "bernoulli"), scored, mu, logvar, args.k,
                       torch.Generator().manual_seed(0))
        print(f"{ends.index(epoch):5d}  {epoch:6d}  {lr_at(epoch, params.train.lr, 'burda'):.2e}  {bound:8.2f}"
              f"{'':30s}{bound - PUBLISHED:+7.2f}  {(time.perf_counter() - start) / 60:7.1f}", flush=True)

    fit(params, train_x, test_x, progress=False, on_epoch=after_epoch)
    print(f"nats per image; {math.fsum(3 ** i for i in range(args.stages)):.0f} of 3280 passes")


if __name__ == "__main__":
    main()
