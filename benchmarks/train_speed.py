"""Seconds per training epoch of the notes' model (d = 20) on 60 000 images of 784 pixels:

  (a) the project's loop, exactly as the train stage runs it;
  (b) a reference loop written the common way: a torchvision dataset with ToTensor, a
      DataLoader, sigmoid outputs with binary_cross_entropy, Adam with its defaults;
  (c) the bound: only the matrix multiplications of forward and backward, same shapes.

Each runs REPEATS times, in alternation (a, c, b: a round's a and c back to back), at batch
128 and 256; the table gives medians, a/b, and a/c as the median of each round's own ratio
(the machine's speed drifts between rounds more than within one), with its range; the last
line is `speedup_vs_reference=X.XX gemm_ratio=Y.YY isa=…` (batch 256). Uses the whole MNIST
beside the checkout (or $VAEPIPE_MNIST), else Fashion-MNIST from Debian's package, else
random pixels.

`--profile` then runs one more epoch of (a) at each batch size under torch.profiler and prints where it goes:
the matrix products' share, the rest by operation, and the time outside any operation
(Python and dispatch); the profiler adds a few µs to each call, so shares are approximate.

    python benchmarks/train_speed.py [--repeats 3] [--device cpu|cuda] [--profile]
"""

from __future__ import annotations

import argparse
import gzip
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
from support import find_mnist, isa  # noqa: E402
from vaepipe.stage import keep_freed_memory  # noqa: E402
from vaepipe.layout import FILES  # noqa: E402
from vaepipe.data.idx import read_split, write_idx  # noqa: E402
from vaepipe.model.vae import VAE  # noqa: E402
from vaepipe.training.loop import make_optimizer, train_epoch  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")
D = 20
N = 60000


def data_source() -> tuple[str, Path | None]:
    """The whole MNIST beside the checkout, else Debian's Fashion-MNIST, else none."""
    mnist = find_mnist()
    if mnist is not None:
        return "MNIST", mnist
    return ("Fashion-MNIST", FASHION) if FASHION.exists() else ("random pixels", None)


def raw_folder(root: Path) -> Path:
    """Four IDX files of 60 000 + 10 000 images (random digits when no data set is here),
    where torchvision's dataset class looks for them."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    source = data_source()[1]
    if source is not None:
        for name in FILES:
            shutil.copy(source / name, raw / name)
    else:
        rng = np.random.default_rng(0)
        for name in FILES:
            n = N if name.startswith("train") else 10000
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            write_idx(raw / name, images if "images" in name else images[:, 0, 0] % 10)
    for name in FILES:  # torchvision reads the decompressed files
        (raw / name[:-3]).write_bytes(gzip.decompress((raw / name).read_bytes()))
    return raw


def project_epoch(x, batch_size, device, arch: str = "mlp"):
    """(a): the train stage's own epoch function, on the in-memory tensor."""
    torch.manual_seed(0)
    model = VAE(D, arch=arch).to(device)
    optimizer = make_optimizer(model, 1e-3)
    generator = torch.Generator().manual_seed(0)
    return lambda: train_epoch(model, optimizer, x, epoch=1, batch_size=batch_size, beta=1.0,
                               likelihood="bernoulli", generator=generator, progress=False)


class ReferenceVAE(nn.Module):
    """The notes' model as published examples write it: sigmoid output, notes' forward."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, D ** 2), nn.ReLU(), nn.Linear(D ** 2, D * 2))
        self.decoder = nn.Sequential(nn.Linear(D, D ** 2), nn.ReLU(), nn.Linear(D ** 2, 784), nn.Sigmoid())

    def forward(self, x):
        mu_logvar = self.encoder(x.view(-1, 784)).view(-1, 2, D)
        mu, logvar = mu_logvar[:, 0, :], mu_logvar[:, 1, :]
        std = logvar.mul(0.5).exp_()
        z = std.data.new(std.size()).normal_().mul(std).add_(mu)
        return self.decoder(z), mu, logvar


def reference_epoch(root, batch_size, device, network=ReferenceVAE, images: int | None = None):
    """(b): torchvision dataset + ToTensor + DataLoader + binary_cross_entropy + Adam, for
    `network()`, a model answering (x̂ in [0, 1], μ, log σ²); on the first `images` only."""
    from torchvision import datasets, transforms

    dataset = datasets.FashionMNIST(root, train=True, download=False, transform=transforms.ToTensor())
    if images is not None:
        dataset = torch.utils.data.Subset(dataset, range(images))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    torch.manual_seed(0)
    model = network().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def epoch():
        model.train()
        total = 0.0
        for x, _ in loader:
            x = x.to(device)
            x_hat, mu, logvar = model(x)
            bce = F.binary_cross_entropy(x_hat, x.view(-1, 784), reduction="sum")
            kld = 0.5 * torch.sum(logvar.exp() - logvar - 1 + mu.pow(2))
            loss = bce + kld
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        return total / len(dataset)
    return epoch


def gemm_bound(batch_size, device):
    """(c): the 11 matrix multiplications per batch (4 forward, 4 weight gradients, 3 input
    gradients; none for the data), into preallocated outputs."""
    layers = [(784, D ** 2), (D ** 2, 2 * D), (D, D ** 2), (D ** 2, 784)]
    sizes = [batch_size] * (N // batch_size) + ([N % batch_size] if N % batch_size else [])
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(o, i, generator=g).to(device) for i, o in layers]
    plans = []
    for b in sorted(set(sizes)):
        xs = [torch.randn(b, i, generator=g).to(device) for i, _ in layers]
        grads = [torch.randn(b, o, generator=g).to(device) for _, o in layers]
        outs = [torch.empty(b, o, device=device) for _, o in layers]
        dws = [torch.empty(o, i, device=device) for i, o in layers]
        dxs = [torch.empty(b, i, device=device) for i, _ in layers]
        plans.append((b, xs, grads, outs, dws, dxs))
    by_size = {plan[0]: plan for plan in plans}

    def epoch():
        for b in sizes:
            _, xs, grads, outs, dws, dxs = by_size[b]
            for k, w in enumerate(weights):
                torch.mm(xs[k], w.t(), out=outs[k])
                torch.mm(grads[k].t(), xs[k], out=dws[k])
                if k:  # no gradient for the input images
                    torch.mm(grads[k], w, out=dxs[k])
        if device.type == "cuda":
            torch.cuda.synchronize()
    return epoch


GEMMS = {"aten::mm", "aten::addmm"}


def profile_epoch(epoch, top: int = 12) -> None:
    """Where one epoch of `epoch` goes, by operation: the products against everything else."""
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        epoch()
    wall = (time.perf_counter() - start) * 1e6
    ops = [(event.key, event.self_cpu_time_total, event.count) for event in prof.key_averages()]
    gemm = sum(spent for key, spent, _ in ops if key in GEMMS)
    print(f"# profiled epoch of (a): {wall / 1e6:.2f} s; the products (mm, addmm) {gemm / 1e6:.2f} s "
          f"({gemm / wall:.0%}); outside any operation {(wall - sum(spent for _, spent, _ in ops)) / 1e6:.2f} s")
    for key, spent, count in sorted((op for op in ops if op[0] not in GEMMS), key=lambda op: -op[1])[:top]:
        print(f"#   {key:<36}{spent / 1e3:9.1f} ms {spent / wall:6.1%}  {count} calls")


def timed(epoch, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    epoch()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--profile", action="store_true", help="then profile one epoch of (a) at each batch size")
    args = parser.parse_args()
    device = torch.device(args.device)
    keep_freed_memory()  # as every stage does
    print(f"# {platform.processor() or platform.machine()} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {device}, "
          f"data: {data_source()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        raw = raw_folder(Path(tmp))
        x = torch.from_numpy(read_split(raw, "train")[0]).to(device)
        results = {}
        for batch_size in args.batch_sizes:
            runners = {"a": project_epoch(x, batch_size, device),  # a then c: the pair of each
                       "c": gemm_bound(batch_size, device),            # round sees the same machine
                       "b": reference_epoch(tmp, batch_size, device)}
            for run in runners.values():  # warm-up: allocator, thread pool, first-call costs
                timed(run, device)
            times = {name: [] for name in runners}
            for _ in range(args.repeats):
                for name, run in runners.items():
                    times[name].append(timed(run, device))
            results[batch_size] = {name: statistics.median(t) for name, t in times.items()}
            ratios = [a / c for a, c in zip(times["a"], times["c"])]
            results[batch_size]["a/c"] = statistics.median(ratios)
            results[batch_size]["a/c range"] = f"{min(ratios):.2f}–{max(ratios):.2f}"
        if args.profile:
            profile_epoch(runners["a"])
    print(f"{'batch':>5} {'(a) project s':>14} {'(b) reference s':>16} {'(c) gemm s':>11} "
          f"{'a/b':>6} {'a/c':>6} {'a/c of each round':>18}")
    for batch_size, m in results.items():
        print(f"{batch_size:>5} {m['a']:>14.3f} {m['b']:>16.3f} {m['c']:>11.3f} "
              f"{m['a'] / m['b']:>6.3f} {m['a/c']:>6.2f} {m['a/c range']:>18}")
    final = results[256] if 256 in results else results[args.batch_sizes[-1]]
    print(f"speedup_vs_reference={final['b'] / final['a']:.2f} gemm_ratio={final['a/c']:.2f} "
          f"isa={isa(device)}")


if __name__ == "__main__":
    main()
