"""Numbers about a trained model, per image and in nats.

`score` is the notebook's test loss (z = μ). The rest go beyond the notes: the sampled
negative ELBO, the importance-weighted bound of Burda et al. (2016), active units, and
scores of sample quality from a classifier's features.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from vaepipe.data.splits import unit
from vaepipe.model.loss import TERMS, kl_per_dim, reconstruction, vae_loss
from vaepipe.model.vae import footprint
from vaepipe.model.network import Footprint
from vaepipe.resources import FLOAT

IMAGES_PER_PASS = 2000  # images per forward pass when scoring: bounds memory, not results
PASS_BYTES = 256 << 20  # and fewer where one pass's values would take more than this
ACTIVE_THRESHOLD = 0.01  # Burda et al.'s threshold on Cov_x(E_q[z_u])


def chunks(n: int, size: int = IMAGES_PER_PASS):
    return (slice(start, min(n, start + size)) for start in range(0, n, size))


def images_per_pass(network: Footprint) -> int:
    """Images (or decodings) a scoring pass takes: IMAGES_PER_PASS, or fewer when the values
    the network makes for one image would pass PASS_BYTES at that many (the notes' MLP
    makes 13 KB of them, 2000 a pass; the conv network at side 64 in colour 2.4 MB, 113 a pass)."""
    return max(1, min(IMAGES_PER_PASS, PASS_BYTES // (network.forward * FLOAT)))


@torch.no_grad()
def score(model, x: torch.Tensor, *, beta: float, likelihood: str
          ) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Mean loss terms per image with z = μ, and every image's μ and log σ² (`x` bytes or floats)."""
    model.eval()
    totals = torch.zeros(len(TERMS), device=x.device)
    mus, logvars = [], []
    for part in chunks(len(x), images_per_pass(footprint(model))):
        images = unit(x[part])
        mu, logvar = model.encode(images)
        terms = vae_loss(model.decode_logits(mu), images, mu, logvar, beta=beta, likelihood=likelihood)
        totals += torch.stack([terms[name] for name in TERMS])
        mus.append(mu)
        logvars.append(logvar)
    return dict(zip(TERMS, (totals / len(x)).tolist())), torch.cat(mus), torch.cat(logvars)


@torch.no_grad()
def encode_all(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image's μ and log σ², a chunk at a time."""
    model.eval()
    codes = [model.encode(unit(x[part])) for part in chunks(len(x), images_per_pass(footprint(model)))]
    return torch.cat([mu for mu, _ in codes]), torch.cat([logvar for _, logvar in codes])


def sample_posterior(mu, logvar, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k draws z = μ + ε ⊙ σ for every image: [k, N, d]."""
    eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * logvar.mul(0.5).exp()


def log_normal(z: torch.Tensor, mu, logvar) -> torch.Tensor:
    """log N(z; μ, diag σ²), summed over the last dimension."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def decoder_log_likelihood(model, *likelihoods: str) -> Callable:
    """log p(x|z) = −reconstruction (for `gaussian`, without the constant ½·784·log 2π); with
    several likelihoods, each of them from the same decodings, stacked."""
    def log_likelihood(x, z):  # x: [N, 784], z: [k, N, d] -> [k, N] (or [likelihoods, k, N])
        k, n = z.shape[:2]
        logits = model.decode_logits(z.reshape(k * n, -1)).view(k, n, -1)
        if len(likelihoods) == 1:
            return -reconstruction(logits, x, likelihoods[0])  # x broadcast over the k draws, not copied
        return torch.stack([-reconstruction(logits, x, likelihood) for likelihood in likelihoods])
    return log_likelihood


def draw_passes(n: int, k: int, per_pass: int = IMAGES_PER_PASS):
    """(images, draws) per pass for k posterior draws of each of n images, about `per_pass`
    decodings a pass: k = 100 takes 20 images at once, k = 5000 one image in 3 passes."""
    draws = min(k, per_pass)
    for part in chunks(n, max(1, per_pass // k)):
        yield part, [min(draws, k - done) for done in range(0, k, draws)]


@torch.no_grad()
def neg_elbo(log_likelihood: Callable, x, mu, logvar, samples: int,
             generator: torch.Generator | None = None, per_pass: int = IMAGES_PER_PASS) -> float:
    """−ELBO with β = 1 per image: E_q[−log p(x|z)] over `samples` draws + KL (closed form)."""
    total = 0.0
    for part, passes in draw_passes(len(x), samples, per_pass):
        images = unit(x[part])
        recon = -sum(log_likelihood(images, sample_posterior(mu[part], logvar[part], draws, generator)
                                    ).sum(0) for draws in passes) / samples
        total += (recon + kl_per_dim(mu[part], logvar[part]).sum(-1)).sum().item()
    return total / len(x)


@torch.no_grad()
def iw_nll(log_likelihood: Callable, x, mu, logvar, k: int,
           generator: torch.Generator | None = None, per_pass: int = IMAGES_PER_PASS) -> float | list[float]:
    """−log p(x) bounded by −log (1/k) Σᵢ p(x|zᵢ) p(zᵢ) / q(zᵢ|x), zᵢ ~ q(z|x), per image.

    Burda et al. (2016): with k = 1 this is the negative ELBO; it tightens as k grows.
    Passes of draws are combined by a log-sum-exp of their log-sum-exps, so any k fits.
    A `log_likelihood` of several likelihoods gives each one's bound, from the same draws.
    """
    totals = None
    zeros = torch.zeros_like(mu[:1])
    for part, passes in draw_passes(len(x), k, per_pass):
        sums, images = [], unit(x[part])
        for draws in passes:
            z = sample_posterior(mu[part], logvar[part], draws, generator)
            log_w = log_likelihood(images, z) + log_normal(z, zeros, zeros) - log_normal(z, mu[part], logvar[part])
            sums.append(torch.logsumexp(log_w, dim=-2))  # over the draws
        bound = (torch.logsumexp(torch.stack(sums), dim=0) - math.log(k)).sum(-1).reshape(-1).tolist()
        totals = [total - value for total, value in zip(totals or [0.0] * len(bound), bound)]  # in float64
    means = [total / len(x) for total in totals]
    return means if len(means) > 1 else means[0]


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Latent dimensions u whose posterior mean varies across inputs: Cov_x(E_q[z_u]) > 0.01."""
    return int((mu.double().var(dim=0, unbiased=False) > threshold).sum())


def class_balance(predicted: torch.Tensor, classes: int = 10) -> float:
    """Entropy of the predicted-class histogram / log(classes): 1 = all classes equally often."""
    p = torch.bincount(predicted, minlength=classes).double() / len(predicted)
    p = p[p > 0]
    return float((p * p.reciprocal().log()).sum() / math.log(classes))  # Σ p log(1/p): never −0.0


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖m₁ − m₂‖² + Tr(C₁ + C₂ − 2 (C₁C₂)^½) between Gaussians fitted to two feature sets."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr (C₁C₂)^½ = Σ √λ of the symmetric C₁^½ C₂ C₁^½, which eigh handles stably
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * np.sqrt(cross).sum())


def likelihood_meaning(likelihood: str, binarize: str) -> str:
    """What eval.json's likelihood numbers are; `iw_nll` bounds −log p(x) of a normalised
    density only for `continuous-bernoulli` and `bernoulli-binarized`, and of a probability
    of the 8-bit image for `discretized`."""
    if likelihood == "bernoulli":  # BCE on grey pixels is not a distribution over them
        return "bernoulli-unnormalised" if binarize == "none" else "bernoulli-binarized"
    if likelihood == "gaussian":
        return "gaussian-without-constant"  # ½‖x − x̂‖², leaving out ½·784·log 2π
    if likelihood == "discretized":
        return "discretized-continuous-bernoulli-8-bit"
    return likelihood


DISCRETE_FROM = ("bernoulli", "continuous-bernoulli", "discretized")  # decoders of logits


@torch.no_grad()
def test_report(model, hparams: dict, x: torch.Tensor, *, elbo_samples: int, iw_samples: int,
                generator: torch.Generator) -> tuple[dict[str, float | str], torch.Tensor]:
    """The test-set metrics of eval.json, and the mean KL of each latent dimension; `x` is
    the test set as the model was trained to see it (binarized or not), bytes or floats."""
    likelihood, per_pass = hparams["likelihood"], images_per_pass(footprint(model))
    report, mu, logvar = score(model, x, beta=hparams["beta"], likelihood=likelihood)
    report["neg_elbo"] = neg_elbo(decoder_log_likelihood(model, likelihood), x, mu, logvar, elbo_samples, generator,
                                  per_pass)
    # grey images as the 8-bit data they are: the decoder's logits read as the discretized
    # continuous Bernoulli, bounded from the same draws as iw_nll (no decoding twice)
    discrete = hparams["binarize"] == "none" and likelihood in DISCRETE_FROM
    if hparams["variational"]:  # the AE defines no posterior to weight samples by
        if discrete:
            report["iw_nll"], report["discrete_nll"] = iw_nll(
                decoder_log_likelihood(model, likelihood, "discretized"), x, mu, logvar, iw_samples, generator,
                per_pass)
            report["bits_per_dim"] = report["discrete_nll"] / (x.shape[1] * math.log(2))
        else:
            report["iw_nll"] = iw_nll(decoder_log_likelihood(model, likelihood), x, mu, logvar, iw_samples, generator,
                                      per_pass)
    report["mse"] = sum((unit(x[part]) - model.decode(mu[part])).pow(2).sum().item()
                        for part in chunks(len(x), per_pass)) / x.numel()
    report["active_units"] = active_units(mu)
    report["likelihood"] = likelihood_meaning(likelihood, hparams["binarize"])
    return report, kl_per_dim(mu, logvar).mean(dim=0).cpu()


def bound_needs(network: Footprint) -> dict[str, float]:
    """The test metrics: the bound and the ELBO decode in passes of a fixed size whatever k
    is (the scoring of samples is `classifier.scoring_needs`)."""
    return {"d": network.parameters * FLOAT + 3 * images_per_pass(network) * network.decoding * FLOAT}
