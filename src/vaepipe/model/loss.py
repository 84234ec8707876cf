"""The loss of the notes: reconstruction + β · KL(q(z|x) ‖ N(0, I)), summed over the batch.

    l(x, x̂) = l_reconstruction + β/2 Σᵢ (V(zᵢ) − log V(zᵢ) − 1 + E(zᵢ)²)

(notes, "The penalty term"). Every metric, CSV column and log line takes its name from
the dict `vae_loss` returns.
"""

from __future__ import annotations

import math

import torch

TERMS = ("loss", "recon", "kl")
CONTINUOUS_BERNOULLI = ("continuous-bernoulli", "discretized")  # likelihoods whose mean is the continuous Bernoulli's


def bce(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """−Σᵢ [xᵢ log x̂ᵢ + (1 − xᵢ) log(1 − x̂ᵢ)] per image, for x̂ = sigmoid(logits), as
    max(l, 0) − x·l + log(1 + e^−|l|), which never takes log(0); log(1 + ·) rather than
    log1p, which is not vectorised on CPU (they differ by < 1e-7 per pixel)."""
    # the same arithmetic in place after two allocations: fewer fresh pages to fault in
    loss = logits.clamp(min=0).sub_(x * logits)
    return loss.add_(logits.abs().neg_().exp_().add_(1).log_()).sum(dim=-1)


def bce_gradient(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """∂ bce / ∂ logits, the closed form x̂ − x: one pass instead of autograd's six."""
    return torch.sigmoid(logits).sub_(x)


class BinaryCrossEntropy(torch.autograd.Function):
    """`bce` with `bce_gradient` as its backward."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, x)
        return bce(logits, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, x = ctx.saved_tensors
        return bce_gradient(logits, x).mul_(grad.unsqueeze(-1)), None


def binary_cross_entropy(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return BinaryCrossEntropy.apply(logits, x)


TAYLOR_BELOW = 1e-2  # |logit| under which log C uses its series: l / tanh(l/2) is 0/0 at l = 0


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(λ) per pixel, C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ) for λ = sigmoid(l).

    Loaiza-Ganem & Cunningham (2019), eq. 3. With 1 − 2λ = −tanh(l/2) and
    artanh(1 − 2λ) = −l/2 this is C = l / tanh(l/2), which is 0/0 at λ = ½: there its series
    log 2 + l²/12 − 7l⁴/1440 is used instead (error < 1e-12 below |l| = TAYLOR_BELOW). One
    log and one tanh per pixel, and no host sync: faster than two logs.
    """
    small = logits.abs() < TAYLOR_BELOW
    safe = torch.where(small, torch.ones_like(logits), logits.abs())  # no 0/0, not even in grad
    far = (safe / torch.tanh(safe * 0.5)).log()
    l2 = torch.where(small, logits, torch.zeros_like(logits)).pow(2)
    near = math.log(2) + l2 * (1 / 12 - l2 * (7 / 1440))
    return torch.where(small, near, far)


LEVELS = 256  # the values of an 8-bit pixel


def discretized_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log P(level | z) per pixel, for x = level / 255: the continuous Bernoulli of `logits`
    (a density ∝ e^{l·u} on [0, 1]) integrated over the level's bin [k/256, (k + 1)/256),

        P(k) = e^{l·k/256} (e^{l/256} − 1) / (e^l − 1),

    which sums to 1 over the 256 levels for any l: a distribution over 8-bit images, whose
    −log is never negative. Its gradient is the closed form of `DiscretizedLogProb`."""
    return DiscretizedLogProb.apply(logits, x)


class DiscretizedLogProb(torch.autograd.Function):
    """`discretized_log_prob`, computed in place outside autograd's graph (a pass about a
    third faster than out of place), with the closed-form gradient

        ∂ log P(k) / ∂l = k/256 + m(l/256)/256 − m(l),

    m(l) = 1/(1 − e^−l) − 1/l the continuous Bernoulli's mean (`decoded_mean`, with its
    series near l = 0), in which the two 1/l terms have cancelled exactly."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        level = torch.round(x * (LEVELS - 1))
        ctx.save_for_backward(logits, level)
        return _discretized_log_prob(logits, level)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, level = ctx.saved_tensors
        mean = decoded_mean(logits, "continuous-bernoulli")
        slope = level / LEVELS + decoded_mean(logits / LEVELS, "continuous-bernoulli") / LEVELS - mean
        return grad * slope, None


def _discretized_log_prob(logits: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """log P(k) computed as e^{−|l|·j/256} (1 − u) / (1 − u²⁵⁶) with u = e^{−|l|/256} and j
    the level's distance from the end the mass leans to: no term grows with l, so float32
    keeps the probabilities summing to 1 within 1e-6 (the direct form loses that to
    cancelling terms of size l). The ratio is 1 / Π_{i<8} (1 + u^(2^i)), two exps, products
    and one log, without the cancellation of 1 − u for small l and without expm1, which is
    not vectorised on CPU. Powers of u come from e^{−|l|/256} and e^{−|l|/16} by squaring at
    most three times, each squaring doubling the relative error. The ratio is 0/0 at l = 0;
    below |l| = TAYLOR_BELOW its log is log((e^t − 1)/t) = t/2 + t²/24 − t⁴/2880 + O(t⁶) for
    both t (error < 1e-16), computed only where such logits are. `level` (k) may be
    broadcast against `logits`."""
    magnitude = logits.abs()
    clamped = magnitude.clamp(min=TAYLOR_BELOW)  # the small ones are replaced below
    product = None
    for exponent in (1, 16):  # (1 + u)(1 + u²)(1 + u⁴)(1 + u⁸), then the same for u¹⁶
        power = clamped.mul(-exponent / LEVELS).exp_()
        for squarings in range(4):
            if squarings:
                power.mul_(power)
            product = power + 1 if product is None else product.addcmul_(product, power)
    lean = torch.where(logits >= TAYLOR_BELOW, level - (LEVELS - 1), level)  # j: 255 − k where l > 0
    log_p = product.log_().neg_().addcmul_(logits, lean, value=1 / LEVELS)
    small = (magnitude < TAYLOR_BELOW).nonzero(as_tuple=True)
    if len(small[0]):
        b = logits[small]
        a = b / LEVELS
        a2, b2 = a * a, b * b
        series = -math.log(LEVELS) + (a - b) / 2 + (a2 - b2) / 24 - (a2 * a2 - b2 * b2) / 2880
        log_p.index_put_(small, b * level.expand_as(logits)[small] / LEVELS + series)
    return log_p


def reconstruction(logits: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """−log p(x|z) per image: binary cross-entropy for [0,1] pixels (a density only for
    binary x), the continuous Bernoulli (a density on [0, 1]: BCE − log C), its discretized
    form (a probability of the 8-bit image), or ½‖x − x̂‖² for real values (a unit-variance
    Gaussian without its constant ½·784·log 2π)."""
    if likelihood == "bernoulli":
        return binary_cross_entropy(logits, x)
    if likelihood == "continuous-bernoulli":
        return binary_cross_entropy(logits, x) - continuous_bernoulli_log_norm(logits).sum(dim=-1)
    if likelihood == "discretized":
        return -discretized_log_prob(logits, x).sum(dim=-1)
    return 0.5 * (x - torch.sigmoid(logits)).pow(2).sum(dim=-1)


def decoded_mean(logits: torch.Tensor, likelihood: str, expm1=torch.expm1) -> torch.Tensor:
    """The mean of p(x|z), what figures show: λ = sigmoid(l), except for the continuous
    Bernoulli, whose mean is 1/(1 − e^−l) − 1/l, not λ (its paper advises drawing the
    mean). Near l = 0 that difference cancels, so its series ½ + l/12 − l³/720 + l⁵/30240
    is used below |l| = ½ (truncation error < 1e-8 there). The discretized form shows the
    mean of the density it bins. (`expm1` is replaceable for the ONNX export, which lacks it.)"""
    if likelihood not in CONTINUOUS_BERNOULLI:
        return torch.sigmoid(logits)
    small = logits.abs() < 0.5
    safe = torch.where(small, torch.ones_like(logits), logits)
    far = -expm1(-safe).reciprocal() - safe.reciprocal()
    l = torch.where(small, logits, torch.zeros_like(logits))
    return torch.where(small, 0.5 + l / 12 - l.pow(3) / 720 + l.pow(5) / 30240, far)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """½ (σ² − log σ² − 1 + μ²) for every image and latent dimension."""
    return 0.5 * (logvar.exp() - logvar - 1 + mu.pow(2))


def vae_loss(logits, x, mu, logvar, *, beta: float, likelihood: str) -> dict[str, torch.Tensor]:
    """The batch's summed loss and its two terms (β = 0 is the classic AE's loss)."""
    return loss_terms(reconstruction(logits, x, likelihood).sum(), kl_per_dim(mu, logvar).sum(), beta)


def loss_terms(recon: torch.Tensor, kl: torch.Tensor, beta: float) -> dict[str, torch.Tensor]:
    """The loss of summed terms, and the terms, under the names of TERMS."""
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl}
