"""The test set's μ, log σ² and labels at each epoch (epoch 0 = untrained), for figure 8."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from vaepipe.atomic import atomic_path, write_tensors
from vaepipe.errors import UserError
from vaepipe.paths import snapshot


def save_snapshots(folder: Path, codes: dict[int, tuple[torch.Tensor, torch.Tensor]],
                   labels: torch.Tensor) -> None:
    with atomic_path(folder, directory=True) as tmp:
        for epoch, (mu, logvar) in codes.items():
            write_tensors(tmp / snapshot(epoch), {"mu": mu, "logvar": logvar, "labels": labels})


def last_epoch(folder: Path) -> int:
    """The last epoch the train stage kept codes for."""
    epochs = [int(m.group(1)) for p in folder.iterdir() if (m := re.fullmatch(r"epoch-(\d+)\.pt", p.name))]
    if not epochs:
        raise UserError(f"{folder} holds no snapshots: run `dvc repro train --force`")
    return max(epochs)


def figure_epochs(requested: list[int], last: int) -> list[int]:
    """The requested epochs the run reached, always ending with its last: `epochs: 3` with
    the default [0, 5, 10] shows 0 and 3, with a note on what was left out."""
    kept = [epoch for epoch in requested if epoch <= last]
    dropped = [epoch for epoch in requested if epoch > last]
    if dropped:
        print(f"note: project.epochs {dropped} are past the last training epoch ({last}); "
              f"showing {sorted(set(kept) | {last})}", file=sys.stderr)
    return sorted(set(kept) | {last})


def load_snapshot(folder: Path, epoch: int) -> dict[str, torch.Tensor]:
    return torch.load(folder / snapshot(epoch), weights_only=True)
