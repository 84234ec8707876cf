"""Likelihoods that are densities: the continuous Bernoulli on [0, 1] pixels and the
Bernoulli on binarized pixels, checked against quadrature and torch.distributions; and the
discretized continuous Bernoulli, a distribution over the 256 levels of 8-bit pixels."""

from __future__ import annotations

import math

import pytest
import torch

from vaepipe.data.splits import as_modelled, binarize
from vaepipe.model.loss import (LEVELS, TAYLOR_BELOW, continuous_bernoulli_log_norm, decoded_mean, discretized_log_prob,
                          reconstruction)
from vaepipe.evaluation.metrics import decoder_log_likelihood, iw_nll, likelihood_meaning, neg_elbo, score
from vaepipe.evaluation.metrics import test_report as report_of  # not collected as a test
from vaepipe.model.vae import VAE

LOGITS = [-30.0, -6.0, -1.0, -0.3, -TAYLOR_BELOW / 2, 0.0, 1e-4, 0.02, 0.7, 3.0, 12.0, 40.0]


def log_density(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|λ) of the continuous Bernoulli, one pixel per row."""
    return -reconstruction(logits.unsqueeze(1), x.unsqueeze(1), "continuous-bernoulli")


@pytest.mark.parametrize("logit", LOGITS)
def test_continuous_bernoulli_density_integrates_to_one(logit):
    x = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    density = log_density(torch.full_like(x, logit), x).exp()
    assert torch.trapezoid(density, x).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_continuous_bernoulli_matches_torch_distributions(dtype):
    g = torch.Generator().manual_seed(0)
    logits = torch.cat([torch.tensor(LOGITS[1:-1], dtype=dtype), 5 * torch.randn(200, generator=g, dtype=dtype)])
    x = torch.rand(len(logits), generator=g, dtype=dtype)
    # against float64: torch's own float32 form loses digits next to λ = ½ (3e-4 in the mean)
    reference = torch.distributions.ContinuousBernoulli(logits=logits.double())
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
    torch.testing.assert_close(log_density(logits, x).double(), reference.log_prob(x.double()), **tolerance)
    torch.testing.assert_close(decoded_mean(logits, "continuous-bernoulli").double(), reference.mean, **tolerance)


def test_log_normaliser_is_finite_and_smooth_at_a_half_and_near_0_and_1():
    for dtype in (torch.float32, torch.float64):
        extremes = torch.tensor([-100.0, -40.0, 40.0, 100.0], dtype=dtype)
        assert torch.isfinite(continuous_bernoulli_log_norm(extremes)).all()
        assert continuous_bernoulli_log_norm(torch.zeros(1, dtype=dtype)).item() == pytest.approx(
            torch.log(torch.tensor(2.0)).item())
    # continuous across the switch to the series, and its derivative too
    edge = torch.tensor([TAYLOR_BELOW * (1 - 1e-9), TAYLOR_BELOW * (1 + 1e-9)], dtype=torch.float64)
    values = continuous_bernoulli_log_norm(edge)
    assert abs(values[1] - values[0]).item() < 1e-12
    logits = torch.linspace(-0.05, 0.05, 1001, dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(continuous_bernoulli_log_norm(logits).sum(), logits)
    exact = 1 / logits.detach() - 1 / torch.sinh(logits.detach())  # d/dl log(l / tanh(l/2))
    exact[logits.detach() == 0] = 0
    assert torch.isfinite(gradient).all()
    torch.testing.assert_close(gradient, exact, atol=1e-9, rtol=1e-6)
    probe = torch.tensor([0.0, 1e-3, -TAYLOR_BELOW, 0.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(continuous_bernoulli_log_norm, (probe,))


def test_dynamic_binarization_is_reproducible_and_has_mean_x():
    x = torch.rand(64, 784, generator=torch.Generator().manual_seed(0))
    first = binarize(x, torch.Generator().manual_seed(5))
    assert torch.equal(first, binarize(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, binarize(x, torch.Generator().manual_seed(6)))
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    generator = torch.Generator().manual_seed(7)
    draws = torch.stack([binarize(x[:4], generator) for _ in range(4000)])
    assert (draws.mean(0) - x[:4]).abs().max().item() < 0.035  # 4000 draws: σ ≤ 0.008


def test_test_set_is_binarized_once_with_a_fixed_seed():
    x = torch.rand(50, 784, generator=torch.Generator().manual_seed(1))
    assert torch.equal(as_modelled(x, "test", "dynamic"), as_modelled(x, "test", "static"))
    assert set(as_modelled(x, "test", "dynamic").unique().tolist()) == {0.0, 1.0}
    assert as_modelled(x, "test", "none") is x and as_modelled(x, "train", "dynamic") is x
    assert set(as_modelled(x, "train", "static").unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("likelihood,binarized", [("bernoulli", "none"), ("bernoulli", "dynamic"),
                                                  ("continuous-bernoulli", "none"), ("gaussian", "none")])
def test_iw_bound_is_at_most_the_negative_elbo_for_each_likelihood(likelihood, binarized):
    torch.manual_seed(0)
    model = VAE(d=6, likelihood=likelihood).eval()
    x = as_modelled(torch.rand(200, 784, generator=torch.Generator().manual_seed(2)), "test", binarized)
    _, mu, logvar = score(model, x, beta=1.0, likelihood=likelihood)
    log_likelihood = decoder_log_likelihood(model, likelihood)
    elbo = neg_elbo(log_likelihood, x, mu, logvar, samples=64, generator=torch.Generator().manual_seed(0))
    bound = iw_nll(log_likelihood, x, mu, logvar, k=64, generator=torch.Generator().manual_seed(0))
    assert bound <= elbo
    assert likelihood_meaning(likelihood, binarized) in {
        "bernoulli-unnormalised", "bernoulli-binarized", "continuous-bernoulli", "gaussian-without-constant"}


def test_likelihood_names_say_when_the_bound_is_on_a_density():
    assert likelihood_meaning("bernoulli", "none") == "bernoulli-unnormalised"
    assert likelihood_meaning("bernoulli", "dynamic") == "bernoulli-binarized"
    assert likelihood_meaning("bernoulli", "static") == "bernoulli-binarized"
    assert likelihood_meaning("continuous-bernoulli", "none") == "continuous-bernoulli"
    assert likelihood_meaning("gaussian", "none") == "gaussian-without-constant"


def test_continuous_bernoulli_model_decodes_to_the_mean_not_lambda():
    torch.manual_seed(0)
    model = VAE(d=4, likelihood="continuous-bernoulli").eval()
    z = torch.randn(8, 4)
    logits = model.decode_logits(z)
    reference = torch.distributions.ContinuousBernoulli(logits=logits.double()).mean
    torch.testing.assert_close(model.decode(z).double(), reference, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(model.decode(z), torch.sigmoid(logits))


# --- the discretized continuous Bernoulli: 8-bit images as the discrete data they are

def level_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log P(k) of each of the 256 levels (columns) for each logit (rows)."""
    x = (torch.arange(LEVELS, dtype=logits.dtype) / (LEVELS - 1)).expand(len(logits), LEVELS)
    return discretized_log_prob(logits.unsqueeze(1).expand(-1, LEVELS), x)


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_the_256_levels_of_a_pixel_sum_to_one_for_any_decoder_output(dtype, tolerance):
    logits = torch.cat([torch.linspace(-30, 30, 6001, dtype=dtype), torch.tensor(LOGITS, dtype=dtype)])
    total = level_log_probs(logits).double().exp().sum(dim=1)
    assert (total - 1).abs().max().item() < tolerance


def test_each_level_probability_matches_the_integral_of_the_density():
    """Against F(u) = (e^{l·u} − 1)/(e^l − 1), the density's CDF, in 50-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    for logit in (-30.0, -2.0, -TAYLOR_BELOW / 3, 0.0, 0.5, 7.0, 30.0):
        l = mpmath.mpf(logit)
        cdf = [(mpmath.expm1(l * k / LEVELS) / mpmath.expm1(l)) if logit else mpmath.mpf(k) / LEVELS
               for k in range(LEVELS + 1)]
        expected = torch.tensor([float(mpmath.log(cdf[k + 1] - cdf[k])) for k in range(LEVELS)], dtype=torch.float64)
        got = level_log_probs(torch.tensor([logit], dtype=torch.float64))[0]
        torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-13)


def test_each_level_probability_has_the_gradient_of_the_integral():
    """The closed-form ∂ log P(k)/∂l against the derivative of the log of the CDF's
    difference in 50-digit arithmetic (within the 1e-8 of the mean's series near l = 0),
    and against finite differences."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    for logit in (-30.0, -2.0, -0.4, -TAYLOR_BELOW / 3, 1e-6, 0.6, 7.0, 30.0):
        def log_p(l, k):
            return mpmath.log((mpmath.expm1(l * (k + 1) / LEVELS) - mpmath.expm1(l * k / LEVELS)) / mpmath.expm1(l))
        expected = torch.tensor([float(mpmath.diff(lambda l: log_p(l, k), logit)) for k in range(LEVELS)],
                                dtype=torch.float64)
        logits = torch.full((LEVELS,), logit, dtype=torch.float64, requires_grad=True)
        discretized_log_prob(logits, torch.arange(LEVELS, dtype=torch.float64) / (LEVELS - 1)).sum().backward()
        torch.testing.assert_close(logits.grad, expected, rtol=0, atol=2e-8)
    logits = torch.linspace(-20, 20, 41, dtype=torch.float64, requires_grad=True)
    x = torch.randint(0, LEVELS, (41,), generator=torch.Generator().manual_seed(0)).double() / (LEVELS - 1)
    assert torch.autograd.gradcheck(lambda l: discretized_log_prob(l, x), (logits,))


def test_a_discrete_probability_is_never_above_one_and_its_gradient_is_finite():
    logits = torch.tensor([-1e4, -300.0, -30.0, -1e-3, 0.0, 1e-7, 5e-3, 30.0, 300.0, 1e4], dtype=torch.float64,
                          requires_grad=True)
    log_p = level_log_probs(logits)
    assert (log_p <= 1e-12).all() and torch.isfinite(log_p).all()
    log_p.sum().backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli", "discretized"])
def test_bits_per_dim_is_never_negative_and_the_bound_at_most_the_elbo(likelihood):
    """For untrained models, whose logits span every size: the bound of a probability of the
    8-bit test images is ≥ 0 bits, under the 8 bits of the uniform distribution for a
    model of any sense, and the importance-weighted bound is at most the ELBO."""
    torch.manual_seed(0)
    model = VAE(d=6, likelihood=likelihood).eval()
    with torch.no_grad():
        model.decoder[2].bias.normal_(0, 20)
    levels = torch.randint(0, 256, (300, 784), generator=torch.Generator().manual_seed(2))
    x = levels.float() / 255
    hparams = {"likelihood": likelihood, "beta": 1.0, "binarize": "none", "variational": True}
    report, _ = report_of(model, hparams, x, elbo_samples=1, iw_samples=64, generator=torch.Generator().manual_seed(0))
    assert report["bits_per_dim"] >= 0
    _, mu, logvar = score(model, x, beta=1.0, likelihood="discretized")
    elbo = neg_elbo(decoder_log_likelihood(model, "discretized"), x, mu, logvar, samples=64,
                    generator=torch.Generator().manual_seed(0))
    assert report["discrete_nll"] <= elbo
    assert report["bits_per_dim"] == pytest.approx(report["discrete_nll"] / (784 * math.log(2)))


def test_bits_per_dim_only_for_8_bit_data_and_logit_decoders():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (50, 784), generator=torch.Generator().manual_seed(1)).float() / 255
    for likelihood, binarized in (("gaussian", "none"), ("bernoulli", "dynamic")):
        hparams = {"likelihood": likelihood, "beta": 1.0, "binarize": binarized, "variational": True}
        report, _ = report_of(VAE(d=3, likelihood=likelihood).eval(), hparams, as_modelled(x, "test", binarized),
                                elbo_samples=1, iw_samples=4, generator=torch.Generator().manual_seed(0))
        assert "bits_per_dim" not in report and "iw_nll" in report
    assert likelihood_meaning("discretized", "none") == "discretized-continuous-bernoulli-8-bit"


def test_a_discretized_model_trains_and_its_iw_nll_is_its_discrete_bound(workdir):
    from support import set_params
    from vaepipe.params import load_params
    from vaepipe.training.loop import fit

    x = torch.randint(0, 256, (256, 784), generator=torch.Generator().manual_seed(3)).float() / 255
    set_params(workdir, d=3, epochs=2, train__batch_size=64, train__lr=1e-2, train__likelihood="discretized",
               train__device="cpu")
    params = load_params(workdir / "params.yaml")
    model, history = fit(params, x, x[:64], progress=False)
    assert history.rows[-1]["test_loss"] < history.rows[0]["test_loss"]
    hparams = {"likelihood": "discretized", "beta": 1.0, "binarize": "none", "variational": True}
    report, _ = report_of(model, hparams, x[:64], elbo_samples=1, iw_samples=8,
                            generator=torch.Generator().manual_seed(0))
    assert report["iw_nll"] == report["discrete_nll"]
