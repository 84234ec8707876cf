"""Where the networks run: `train.device` (auto, cpu or cuda), shared by every stage that
runs one, so choosing a device never means importing the training loop."""

from __future__ import annotations

import torch

from vaepipe.errors import UserError


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: cuda was asked for but no CUDA GPU is visible; "
                        "set it to auto or cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)
