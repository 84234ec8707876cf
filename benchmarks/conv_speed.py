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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import data_source, raw_folder, timed  # noqa: E402
from vaepipe.idx import read_split  # noqa: E402
from vaepipe.model import VAE  # noqa: E402
from vaepipe.stage import keep_freed_memory  # noqa: E402
from vaepipe.train import make_optimizer, train_epoch  # noqa: E402

D, BATCH = 20, 256


def project_epoch(x, device):
    torch.manual_seed(0)
    model = VAE(D, arch="conv").to(device)
    optimizer = make_optimizer(model, 1e-3)
    generator = torch.Generator().manual_seed(0)
    return lambda: train_epoch(model, optimizer, x, epoch=1, batch_size=BATCH, beta=1.0,
                               likelihood="bernoulli", generator=generator, progress=False)


def reference_epoch(root, images: int, device):
    from torchvision import datasets, transforms

    dataset = datasets.FashionMNIST(root, train=True, download=False, transform=transforms.ToTensor())
    dataset = torch.utils.data.Subset(dataset, range(images))
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True)
    torch.manual_seed(0)
    model = VAE(D, arch="conv").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def epoch():
        model.train()
        total = 0.0
        for x, _ in loader:
            x = x.to(device).view(-1, 784)
            logits, mu, logvar = model(x)
            bce = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum")
            kld = 0.5 * torch.sum(logvar.exp() - logvar - 1 + mu.pow(2))
            loss = bce + kld
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        return total / len(dataset)
    return epoch


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
        runners = {"a": project_epoch(x, device), "b": reference_epoch(tmp, args.images, device)}
        for run in runners.values():  # warm-up
            timed(run, device)
        times = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, run in runners.items():
                times[name].append(timed(run, device))
    ratios = [a / b for a, b in zip(times["a"], times["b"])]
    a, b = statistics.median(times["a"]), statistics.median(times["b"])
    print(f"(a) project loop: median {a:.2f} s an epoch; (b) the common way: median {b:.2f} s")
    print(f"conv_ratio={statistics.median(ratios):.2f} range={min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    main()
