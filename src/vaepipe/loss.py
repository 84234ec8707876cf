"""The loss of the notes: reconstruction + β · KL(q(z|x) ‖ N(0, I)), summed over the batch.

    l(x, x̂) = l_reconstruction + β/2 Σᵢ (V(zᵢ) − log V(zᵢ) − 1 + E(zᵢ)²)

(notes, "The penalty term"). Every metric, CSV column and log line takes its name from
the dict `vae_loss` returns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TERMS = ("loss", "recon", "kl")


def reconstruction(logits: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Per image: binary cross-entropy for [0,1] pixels, or ½‖x − x̂‖² for real values."""
    if likelihood == "bernoulli":
        # BCE on logits equals the notes' BCE on sigmoid outputs, without log(0)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
    return 0.5 * (x - torch.sigmoid(logits)).pow(2).sum(dim=1)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """½ (σ² − log σ² − 1 + μ²) for every image and latent dimension."""
    return 0.5 * (logvar.exp() - logvar - 1 + mu.pow(2))


def vae_loss(logits, x, mu, logvar, *, beta: float, likelihood: str) -> dict[str, torch.Tensor]:
    """The batch's summed loss and its two terms (β = 0 is the classic AE's loss)."""
    recon = reconstruction(logits, x, likelihood).sum()
    kl = kl_per_dim(mu, logvar).sum()
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl}
