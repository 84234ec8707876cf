"""The test set's μ, log σ² and labels at each epoch (epoch 0 = untrained), for figure 8."""

from __future__ import annotations

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


def load_snapshot(folder: Path, epoch: int) -> dict[str, torch.Tensor]:
    path = folder / snapshot(epoch)
    if not path.exists():
        raise UserError(f"{path} not found: project.epochs asks for epoch {epoch}, which the "
                        "train stage did not reach; run `dvc repro train` or lower project.epochs")
    return torch.load(path, weights_only=True)
