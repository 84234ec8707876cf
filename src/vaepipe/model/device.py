"""Where the networks run, `train.device` (auto, cpu or cuda), and what a checkpoint that
cannot be read says: shared by every stage that runs a network, so choosing a device or
loading weights never means importing the training loop or another stage's model."""

from __future__ import annotations

import torch

from vaepipe.errors import UserError


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: cuda was asked for but no CUDA GPU is visible; "
                        "set it to auto or cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        # cuDNN's default convolution gradients may add partial sums in any order: the
        # scoring CNN, and so every FD, changed from run to run on one GPU
        torch.backends.cudnn.deterministic = True
    return torch.device(choice)
