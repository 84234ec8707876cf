"""The trained model for use outside the pipeline.

    from vaepipe.api import load
    vae = load("models/model.pt")        # or a file from `dvc artifacts get <repo> vae`
    mu, logvar = vae.encode(images)      # images: [N, channels·side²] (MNIST: [N, 784] or [N, 28, 28]) in [0, 1]
    pictures = vae.decode(mu)            # [N, channels·side²]: the mean of p(x|z), as the figures show
    digits = vae.sample(16, seed=0)      # decodings of z ~ N(0, I), the same for the same seed

(`vaepipe.api`, not `vaepipe`: the package's `__init__` stays empty, so the download stage
never imports PyTorch.) Nothing in the file is run: it is read with `weights_only=True`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaepipe.model.vae import VAE, load_model


@dataclass
class TrainedVAE:
    model: VAE
    hparams: dict

    @property
    def d(self) -> int:
        return self.model.d

    @torch.no_grad()
    def encode(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and log σ² of q(z|x) for images in [0, 1]."""
        return self.model.encode(torch.as_tensor(x, dtype=torch.float32).reshape(-1, self.model.pixels))

    @torch.no_grad()
    def decode(self, z) -> torch.Tensor:
        return self.model.decode(torch.as_tensor(z, dtype=torch.float32).reshape(-1, self.d))

    def sample(self, count: int, seed: int = 0) -> torch.Tensor:
        return self.model.sample(count, torch.Generator().manual_seed(seed))


def load(path="models/model.pt") -> TrainedVAE:
    """The model a train stage wrote, on the CPU, in evaluation mode."""
    model, hparams = load_model(path)
    return TrainedVAE(model, hparams)
