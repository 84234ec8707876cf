"""The test set's μ, log σ² and labels at each epoch (epoch 0 = untrained), for figure 8:
written by the train stage from tensors, read as arrays without PyTorch (`tensorfile`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vaepipe.atomic import atomic_path, write_tensors
from vaepipe.errors import UserError
from vaepipe.outputs import snapshot
from vaepipe.data.tensorfile import read_tensors

if TYPE_CHECKING:
    import torch


KEEP_EVERY_UP_TO = 100  # a run of more epochs keeps about this many, evenly spaced


def kept_epochs(epochs: int) -> set[int]:
    """The epochs whose codes a run keeps: every one up to KEEP_EVERY_UP_TO epochs (so
    project.epochs can change without training again); beyond, epoch 0, every
    ⌈epochs / KEEP_EVERY_UP_TO⌉-th and the last (3280 epochs of codes would be 13 GB)."""
    step = -(-epochs // KEEP_EVERY_UP_TO)
    return set(range(0, epochs + 1, step)) | {epochs}


def save_snapshots(folder: Path, codes: dict[int, tuple[torch.Tensor, torch.Tensor]],
                   labels: torch.Tensor) -> None:
    with atomic_path(folder, directory=True) as tmp:
        for epoch, (mu, logvar) in codes.items():
            write_tensors(tmp / snapshot(epoch), {"mu": mu, "logvar": logvar, "labels": labels})


def stored_epochs(folder: Path) -> list[int]:
    """The epochs the train stage kept codes for, in order."""
    epochs = [int(m.group(1)) for p in folder.iterdir() if (m := re.fullmatch(r"epoch-(\d+)\.pt", p.name))]
    if not epochs:
        raise UserError(f"{folder} holds no snapshots: run `dvc repro train --force`")
    return sorted(epochs)


def last_epoch(folder: Path) -> int:
    """The last epoch the train stage kept codes for."""
    return stored_epochs(folder)[-1]


def figure_epochs(requested: list[int], stored: list[int]) -> list[int]:
    """The requested epochs the run reached, always ending with its last: `epochs: 3` with
    the default [0, 5, 10] shows 0 and 3, with a note on what was left out. An epoch whose
    codes a long run did not keep is shown as the nearest kept one before it."""
    last = stored[-1]
    kept = sorted({max(e for e in stored if e <= epoch) for epoch in requested if epoch <= last} | {last})
    dropped = [epoch for epoch in requested if epoch > last]
    moved = [epoch for epoch in requested if epoch <= last and epoch not in stored]
    if dropped:
        print(f"note: project.epochs {dropped} are past the last training epoch ({last}); "
              f"showing {kept}", file=sys.stderr)
    if moved:
        print(f"note: a run of {last} epochs keeps the codes of {len(stored)} of them; project.epochs "
              f"{moved} are shown as the nearest kept epoch before each: {kept}", file=sys.stderr)
    return kept


def load_snapshot(folder: Path, epoch: int) -> dict[str, np.ndarray]:
    return read_tensors(folder / snapshot(epoch), "train")
