"""The numbers beyond the notes, on inputs whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from vaepipe.evaluation.metrics import (active_units, class_balance, decoder_log_likelihood, frechet_distance,
                             iw_nll, neg_elbo, score)
from vaepipe.model.vae import VAE


def test_iw_bound_is_tighter_than_the_elbo_on_the_same_model():
    torch.manual_seed(0)
    model = VAE(d=6).eval()
    x = torch.rand(300, 784)
    _, mu, logvar = score(model, x, beta=1.0, likelihood="bernoulli")
    log_likelihood = decoder_log_likelihood(model, "bernoulli")
    generator = torch.Generator().manual_seed(0)
    elbo = neg_elbo(log_likelihood, x, mu, logvar, samples=50, generator=generator)
    bound = iw_nll(log_likelihood, x, mu, logvar, k=50, generator=generator)
    assert bound <= elbo
    one = iw_nll(log_likelihood, x, mu, logvar, k=1, generator=torch.Generator().manual_seed(1))
    assert one == pytest.approx(elbo, rel=2e-3)  # k = 1 is the ELBO itself


class LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(Wz + b, I): log p(x) = log N(x; b, WWᵀ + I) exactly."""

    def __init__(self, dim_x=6, dim_z=2, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(dim_x, dim_z, generator=g, dtype=torch.float64)
        self.b = torch.randn(dim_x, generator=g, dtype=torch.float64)

    def sample(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.W.shape[1], generator=g, dtype=torch.float64)
        return z @ self.W.T + self.b + torch.randn(n, self.W.shape[0], generator=g, dtype=torch.float64)

    def log_likelihood(self, x, z):  # the project's convention: −½‖x − x̂‖², no constant
        return -0.5 * (x - (z @ self.W.T + self.b)).pow(2).sum(-1)

    def exact_nll(self, x):
        """−log p(x) without the ½·D·log 2π the likelihood above leaves out."""
        cov = self.W @ self.W.T + torch.eye(len(self.b), dtype=torch.float64)
        density = torch.distributions.MultivariateNormal(self.b, covariance_matrix=cov)
        return -(density.log_prob(x).mean().item() + 0.5 * len(self.b) * math.log(2 * math.pi))

    def rough_posterior(self, x):
        """A deliberately imperfect diagonal q(z|x) around the exact posterior."""
        precision = torch.eye(self.W.shape[1], dtype=torch.float64) + self.W.T @ self.W
        cov = torch.linalg.inv(precision)
        mean = (x - self.b) @ self.W @ cov
        return 0.7 * mean, torch.log(torch.diagonal(cov)).expand_as(mean) + 0.5


def test_iw_bound_converges_to_the_exact_log_likelihood():
    model = LinearGaussian()
    x = model.sample(200)
    exact = model.exact_nll(x)
    mu, logvar = model.rough_posterior(x)
    gaps = [iw_nll(model.log_likelihood, x, mu, logvar, k, torch.Generator().manual_seed(100 + k)) - exact
            for k in (1, 10, 100, 3000)]
    assert gaps[0] > 0.3  # the rough posterior makes the ELBO loose
    assert all(a > b for a, b in zip(gaps, gaps[1:]))
    assert -0.01 < gaps[-1] < 0.02


def test_active_units_counts_dimensions_whose_mean_varies():
    g = torch.Generator().manual_seed(0)
    n = 5000
    mu = torch.stack([torch.randn(n, generator=g),          # variance 1: active
                      0.2 * torch.randn(n, generator=g),    # variance 0.04: active
                      0.05 * torch.randn(n, generator=g),   # variance 0.0025: inactive
                      torch.full((n,), 3.0)], dim=1)        # constant: inactive
    assert active_units(mu) == 2


def test_class_balance_of_known_histograms():
    assert class_balance(torch.arange(1000) % 10) == pytest.approx(1.0)
    assert math.copysign(1, class_balance(torch.full((50,), 7))) == 1.0  # 0.0, not -0.0
    assert class_balance(torch.tensor([2, 5] * 40)) == pytest.approx(math.log(2) / math.log(10))


def test_frechet_distance_against_scipys_matrix_square_root():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(loc=0.5, size=(4000, 5)) @ rng.normal(size=(5, 5))
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = (((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b)
                - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b).real))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 2.0) == pytest.approx(5 * 4.0, rel=1e-6)
