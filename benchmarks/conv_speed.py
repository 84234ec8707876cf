"""Seconds per training epoch of the convolutional VAE (`arch: conv`, d = 20, side 28, batch
256), two ways, alternating in one run:

  (a) the project's loop, exactly as the train stage runs it (autograd, as for every
      architecture but the notes' MLP);
  (b) the same network trained the common way, as PyTorch-VAE and pytorch/examples write
      it: a torchvision dataset with ToTensor, a DataLoader, sigmoid outputs with
      binary_cross_entropy, torch.optim.Adam, a `loss.item()` a step.

The last line is `conv_ratio=X.XX` (a/b: below 1, the project's loop is faster), with the
range of each round's own ratio. Uses the whole MNIST beside the checkout (or
$VAEPIPE_MNIST), else Fashion-MNIST from Debian's package, else random pixels; `--images`
trains on the first N (both loops the same N).

    python benchmarks/conv_speed.py [--repeats 3] [--images 60000] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import D, data_source, project_epoch, raw_folder, reference_epoch, timed  # noqa: E402
from support import isa  # noqa: E402  (on the path train_speed sets)
from vaepipe.data.idx import read_split  # noqa: E402
from vaepipe.model.vae import VAE  # noqa: E402
from vaepipe.stage import keep_freed_memory  # noqa: E402

BATCH = 256


class SigmoidOutput(nn.Module):
    """The convolutional VAE as the common loop uses a model: pictures in [0, 1] out."""

    def __init__(self):
        super().__init__()
        self.vae = VAE(D, arch="conv")

    def forward(self, x):
        logits, mu, logvar = self.vae(x.view(-1, 784))
        return torch.sigmoid(logits), mu, logvar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    keep_freed_memory()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"data: {data_source()[0]}, {args.images} images, batch {BATCH}")
    with tempfile.TemporaryDirectory() as tmp:
        raw = raw_folder(Path(tmp))
        x = torch.from_numpy(read_split(raw, "train")[0][:args.images]).to(device)
        runners = {"a": project_epoch(x, BATCH, device, "conv"),
                   "b": reference_epoch(tmp, BATCH, device, SigmoidOutput, args.images)}
        for run in runners.values():  # warm-up
            timed(run, device)
        times = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, run in runners.items():
                times[name].append(timed(run, device))
    ratios = [a / b for a, b in zip(times["a"], times["b"])]
    a, b = statistics.median(times["a"]), statistics.median(times["b"])
    print(f"(a) project loop: median {a:.2f} s an epoch; (b) the common way: median {b:.2f} s")
    print(f"conv_ratio={statistics.median(ratios):.2f} range={min(ratios):.2f}-{max(ratios):.2f} isa={isa(device)}")


if __name__ == "__main__":
    main()
