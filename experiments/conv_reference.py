"""`arch: conv` through the pipeline against the common convolutional VAE written the common
way, on the same images for the same steps.

The pipeline's run is `dvc repro train` in a fresh clone of this checkout (d = 20, batch 256,
Adam 1e-3, as params.yaml has them). The reference then trains on that run's own normalized
splits (the same images, byte for byte): PyTorch-VAE's vanilla VAE (stride-2 3×3
convolutions of the same widths, BatchNorm and LeakyReLU), a torchvision-style DataLoader
(batch 256, shuffled each epoch) and `torch.optim.Adam(lr=1e-3)`, for as many epochs, with
the same loss (Bernoulli cross-entropy plus KL per image) and the same test loss (z = μ, in
eval mode). Each is also given as a ratio to the loss of the data's mean image.

    python experiments/conv_reference.py fashion [--epochs 10] [--train 60000]
    python experiments/conv_reference.py tinted [--epochs 10] [--train 10000] [--test 2000]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
from support import FASHION, find_mnist  # noqa: E402
from vaepipe.data.splits import load_split, unit  # noqa: E402
from vaepipe.model.architectures import CONV_WIDTHS, halvings  # noqa: E402

D, BATCH, LR = 20, 256, 1e-3


class CommonVAE(nn.Module):
    """PyTorch-VAE's VanillaVAE (BatchNorm, LeakyReLU), its last layer giving logits."""

    def __init__(self, channels: int, side: int, d: int = D):
        super().__init__()
        self.widths = CONV_WIDTHS[:halvings(side)]
        self.small, self.channels, self.side = side >> len(self.widths), channels, side
        layers, n_in = [], channels
        for width in self.widths:
            layers += [nn.Conv2d(n_in, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.LeakyReLU()]
            n_in = width
        self.encoder = nn.Sequential(*layers)
        flat = self.widths[-1] * self.small ** 2
        self.fc_mu, self.fc_var = nn.Linear(flat, d), nn.Linear(flat, d)
        self.decoder_input = nn.Linear(d, flat)
        layers = []
        for n_in, n_out in zip(self.widths[::-1], self.widths[-2::-1]):
            layers += [nn.ConvTranspose2d(n_in, n_out, 3, stride=2, padding=1, output_padding=1),
                       nn.BatchNorm2d(n_out), nn.LeakyReLU()]
        self.decoder = nn.Sequential(*layers)
        first = self.widths[0]
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(first, first, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(first),
            nn.LeakyReLU(), nn.Conv2d(first, channels, 3, padding=1))

    def forward(self, x):
        h = torch.flatten(self.encoder(x.view(-1, self.channels, self.side, self.side)), 1)
        mu, logvar = self.fc_mu(h), self.fc_var(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        h = self.decoder_input(z).view(-1, self.widths[-1], self.small, self.small)
        return torch.flatten(self.final_layer(self.decoder(h)), 1), mu, logvar


def loss_terms(logits, x, mu, logvar) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction and KL, summed over an image and over the batch."""
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon, kl


def train_reference(train_x: torch.Tensor, test_x: torch.Tensor, channels: int, side: int, epochs: int) -> list[float]:
    """The common way: a DataLoader, Adam, model.train() and model.eval(); the test loss each epoch."""
    torch.manual_seed(0)
    model = CommonVAE(channels, side)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(train_x), batch_size=BATCH, shuffle=True)
    losses = []
    for epoch in range(1, epochs + 1):
        model.train()
        for (batch,) in loader:
            batch = unit(batch)
            logits, mu, logvar = model(batch)
            recon, kl = loss_terms(logits, batch, mu, logvar)
            optimizer.zero_grad()
            ((recon + kl) / len(batch)).backward()
            optimizer.step()
        losses.append(test_loss(model, test_x))
        print(f"  reference epoch {epoch:3d}: test loss {losses[-1]:.2f}", flush=True)
    return losses


@torch.no_grad()
def test_loss(model: CommonVAE, test_x: torch.Tensor) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(test_x), 1000):
        batch = unit(test_x[start:start + 1000])
        logits, mu, logvar = model(batch)
        recon, kl = loss_terms(logits, batch, mu, logvar)
        total += float(recon + kl)
    return total / len(test_x)


def mean_image_loss(train_x: torch.Tensor, test_x: torch.Tensor) -> float:
    """The loss of a model that ignores its input: every test image scored against the
    training set's mean image (no KL)."""
    mean = unit(train_x).mean(0).clamp(1e-6, 1 - 1e-6)
    x = unit(test_x)
    return float(-(x * mean.log() + (1 - x) * (1 - mean).log()).sum() / len(x))


def pipeline_run(folder: Path, dataset: str, epochs: int, counts: dict[str, int], mnist: Path | None,
                 activation: str) -> list[float]:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(folder)], check=True)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params |= {"arch": "conv", "epochs": epochs, "d": D, "activation": activation}
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if dataset == "fashion":
        params["data"] |= {"dataset": "fashion-mnist", "mirror": str(FASHION)}
    else:
        from colour import tinted_mnist  # experiments/colour.py: MNIST in random ink and ground colours
        from test_colour import SIDE

        pictures = folder.parent / "pictures"
        tinted_mnist(mnist, pictures, counts)
        params["data"] |= {"dataset": "folder", "path": str(pictures), "side": SIDE, "channels": 3}
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.perf_counter()
    subprocess.run(["dvc", "repro", "train"], cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"  pipeline: dvc repro train took {time.perf_counter() - start:.0f} s", flush=True)
    with open(folder / "plots" / "training.csv") as rows:
        return [float(row["test_loss"]) for row in csv.DictReader(rows)][1:]  # row 0: the untrained model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("fashion", "tinted"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train", type=int, default=10_000, help="tinted: training pictures")
    parser.add_argument("--test", type=int, default=2_000, help="tinted: test pictures")
    parser.add_argument("--mnist", type=Path, default=find_mnist())
    parser.add_argument("--activation", default=None,
                        help="the pipeline's; by default params.yaml's null, the architecture's own (conv: leaky_relu)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "experiments"))
    print(f"isa={torch.backends.cpu.get_cpu_capability()} threads={torch.get_num_threads()} dataset={args.dataset} "
          f"epochs={args.epochs} activation={args.activation or 'null'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clone"
        ours = pipeline_run(folder, args.dataset, args.epochs, {"train": args.train, "test": args.test}, args.mnist,
                            args.activation)
        train_x, _ = load_split(folder / "data" / "normalized" / "train.pt")
        test_x, _ = load_split(folder / "data" / "normalized" / "test.pt")
        train_x, test_x = train_x.clone(), test_x.clone()
        side = math.isqrt(train_x.shape[1] // (3 if args.dataset == "tinted" else 1))
        channels = train_x.shape[1] // side ** 2
        print(f"  images: {len(train_x)} training, {len(test_x)} test, {channels}×{side}×{side}; "
              f"{math.ceil(len(train_x) / BATCH) * args.epochs} steps each", flush=True)
        start = time.perf_counter()
        reference = train_reference(train_x, test_x, channels, side, args.epochs)
        print(f"  reference: {time.perf_counter() - start:.0f} s", flush=True)
        floor = mean_image_loss(train_x, test_x)
    print(f"\n{'epoch':>5} {'arch: conv':>12} {'reference':>12}")
    for epoch, (a, b) in enumerate(zip(ours, reference), start=1):
        print(f"{epoch:5d} {a:12.2f} {b:12.2f}")
    print(f"\nmean image's loss {floor:.2f}; arch: conv {ours[-1]:.2f} ({ours[-1] / floor:.3f}×), "
          f"reference {reference[-1]:.2f} ({reference[-1] / floor:.3f}×); "
          f"conv ≤ reference: {ours[-1] <= reference[-1]}")


if __name__ == "__main__":
    main()
