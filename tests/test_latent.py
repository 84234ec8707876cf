"""Inside the latent space: figure 4's numbers, traversals, the 2-D manifold, the prior-hole
mixture and the KL warm-up, each pinned by what it must show."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import torch

from support import ROOT
from vaepipe.figures.style import MAX_SIDE
from vaepipe.figures.latent import (by_kl, dimension_stats, fit_mixture, manifold_codes, manifold_images,
                            sample_mixture, save_kl_figure, save_traversal_figure, traversal_images)
from vaepipe.model.loss import kl_per_dim
from vaepipe.model.vae import VAE
from vaepipe.training.loop import beta_at

PNG = b"\x89PNG\r\n\x1a\n"


def codes(n=500, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([3.0, 0.1, 1.0, 0.01, 2.0])[:d]
    return torch.randn(n, d, generator=g) * scale, torch.randn(n, d, generator=g) * 0.5 - scale


def test_dimension_stats_decompose_each_dimensions_kl():
    mu, logvar = codes()
    stats = dimension_stats(mu, logvar)
    kl = kl_per_dim(mu.double(), logvar.double()).mean(0)
    for row in stats:
        assert row["kl"] == pytest.approx(kl[row["dim"]].item())
        assert row["kl"] == pytest.approx(0.5 * (row["v"] + row["mu2"]))  # figure 4's bar is 2·KL
        assert row["variance"] == pytest.approx(logvar[:, row["dim"]].exp().mean().item(), rel=1e-6)


def test_an_inactive_dimension_sits_at_the_bottom_of_figure_4s_curve():
    mu, logvar = torch.zeros(100, 2), torch.zeros(100, 2)
    mu[:, 0], logvar[:, 0] = torch.linspace(-2, 2, 100), -4.0
    inactive = dimension_stats(mu, logvar)[1]
    assert (inactive["variance"], inactive["v"], inactive["mu2"], inactive["kl"]) == (1.0, 0.0, 0.0, 0.0)


def test_traversal_rows_are_sorted_by_kl_most_first():
    stats = dimension_stats(*codes())
    rows = by_kl(stats, 5)
    assert [row["kl"] for row in rows] == sorted((row["kl"] for row in stats), reverse=True)
    assert [row["dim"] for row in by_kl(stats, 2)] == [row["dim"] for row in rows[:2]]


def test_a_dimension_forced_inactive_gives_a_flat_traversal_row():
    torch.manual_seed(0)
    model = VAE(d=4).eval()
    with torch.no_grad():
        model.decoder[0].weight[:, 2] = 0  # the decoder ignores z2
    x = torch.rand(3, 784, generator=torch.Generator().manual_seed(1))
    images = traversal_images(model, x, dims=[0, 2], steps=7)
    assert images.shape == (2, 3, 7, 784)
    flat, moving = images[1], images[0]
    assert torch.equal(flat, flat[:, :1].expand_as(flat))  # every t decodes the same image
    assert (moving[:, 0] - moving[:, -1]).abs().max() > 1e-3
    # the middle column is t = 0: the image's own reconstruction from μ
    torch.testing.assert_close(images[:, :, 3], model.decode(model.encode(x)[0]).expand(2, 3, 784))


def test_traversal_and_kl_figures_are_pngs(tmp_path):
    torch.manual_seed(0)
    model = VAE(d=3).eval()
    x = torch.rand(2, 784)
    stats = dimension_stats(*model.encode(x))
    save_traversal_figure(tmp_path / "t.png", traversal_images(model, x, [1, 0], 5), by_kl(stats, 2))
    save_kl_figure(tmp_path / "k.png", stats)
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG and (tmp_path / "k.png").read_bytes()[:8] == PNG


def test_the_2d_grid_decodes_the_inverse_gaussian_cdf_grid():
    steps = 5
    quantiles = scipy.stats.norm.ppf(np.linspace(0.05, 0.95, steps))
    z = manifold_codes(2, (0, 1), steps).view(steps, steps, 2).double().numpy()
    np.testing.assert_allclose(z[0, :, 0], quantiles, atol=1e-6)     # z0 rises along a row
    np.testing.assert_allclose(z[:, 0, 1], quantiles[::-1], atol=1e-6)  # z1 falls down the rows
    torch.manual_seed(0)
    model = VAE(d=2).eval()
    expected = torch.tensor([[a, b] for b in quantiles[::-1] for a in quantiles], dtype=torch.float32)
    torch.testing.assert_close(manifold_images(model, (0, 1), steps), model.decode(expected))


def test_a_larger_latent_space_gets_its_grid_over_two_dimensions_rest_at_zero():
    z = manifold_codes(6, (1, 4), 4)
    assert z.shape == (16, 6)
    assert torch.count_nonzero(z[:, [0, 2, 3, 5]]) == 0 and torch.count_nonzero(z[:, [1, 4]]) == 32


def test_mixture_samples_come_from_the_fitted_mixture():
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal([-6, 0], [1.0, 0.3], size=(3000, 2)),
                           rng.normal([6, 2], [0.5, 2.0], size=(1000, 2))])
    mixture = fit_mixture(data, components=2, seed=0)
    z = sample_mixture(mixture, 40_000, torch.Generator().manual_seed(0)).double().numpy()
    assert z.shape == (40_000, 2)
    component = mixture.predict(z)
    for k in range(2):
        drawn = z[component == k]
        assert len(drawn) / len(z) == pytest.approx(mixture.weights_[k], abs=0.01)
        np.testing.assert_allclose(drawn.mean(0), mixture.means_[k], atol=0.05)
        np.testing.assert_allclose(np.cov(drawn, rowvar=False), mixture.covariances_[k], rtol=0.06, atol=0.02)
    again = sample_mixture(mixture, 100, torch.Generator().manual_seed(0))
    assert torch.equal(again, sample_mixture(mixture, 100, torch.Generator().manual_seed(0)))
    assert len(set(mixture.predict(again.double().numpy()[:20]))) == 2  # shuffled, not grouped


def test_warmup_raises_beta_linearly_from_zero():
    assert [beta_at(e, 2.0, 4) for e in range(7)] == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert [beta_at(e, 2.0, 0) for e in range(3)] == [2.0, 2.0, 2.0]  # the notes: no warm-up


def test_warmup_is_recorded_in_the_training_history():
    from support import ROOT, synthetic_digits
    from vaepipe.params import load_params
    from vaepipe.training.loop import fit
    import dataclasses

    images, _ = synthetic_digits(300, seed=0)
    x = torch.from_numpy(images.reshape(300, 784)).float() / 255
    params = load_params(ROOT / "params.yaml")
    params = dataclasses.replace(params, d=3, epochs=3, train=dataclasses.replace(
        params.train, warmup_epochs=2, batch_size=100, device="cpu"))
    _, history = fit(params, x, x[:100], progress=False)
    assert [row["beta"] for row in history.rows] == [0.0, 0.0, 0.5, 1.0]
    assert history.rows[1]["train_loss"] == pytest.approx(history.rows[1]["train_recon"])  # β = 0
    assert history.rows[3]["train_loss"] > history.rows[3]["train_recon"]


def test_figure_sizes_are_checked_before_drawing():
    from types import SimpleNamespace

    from vaepipe.errors import UserError
    from vaepipe.figures.latent import latent_needs
    from vaepipe.model.network import mlp_footprint

    options = SimpleNamespace(traversal_images=2, traversal_dims=20, traversal_steps=9, manifold_steps=15,
                              gmm_components=10, gmm_images=30_000)
    notes = mlp_footprint(20, 784)
    assert all(value > 0 for value in latent_needs(notes, 20, options, 60_000, 784).values())
    with pytest.raises(UserError, match="latent.manifold_steps: makes a figure of"):
        latent_needs(notes, 20, SimpleNamespace(**{**vars(options), "manifold_steps": MAX_SIDE // 80}), 60, 784)
    with pytest.raises(UserError, match="latent.gmm_components: 1000 components for 600 training images"):
        latent_needs(notes, 20, SimpleNamespace(**{**vars(options), "gmm_components": 1000}), 600, 784)
    with pytest.raises(UserError, match="latent.gmm_components: 1000 components for 500 training images"):
        latent_needs(notes, 20, SimpleNamespace(**{**vars(options), "gmm_components": 1000, "gmm_images": 500}),
                     600, 784)


def test_the_mixture_has_the_same_bits_whatever_the_number_of_blas_threads():
    """OpenBLAS splits its work by the threads it is given, so a fit's last bits would follow
    the machine's cores; the fit runs on one thread, whatever the process allows."""
    code = ("import numpy as np\n"
            "from vaepipe.figures.latent import fit_mixture\n"
            "rng, n = np.random.default_rng(0), 30000\n"
            "codes = rng.normal(size=(n, 20)) * rng.uniform(0.1, 2, size=20) + rng.integers(0, 3, size=(n, 1))\n"
            "m = fit_mixture(codes, components=10, seed=0)\n"
            "print(m.means_.tobytes().hex(), m.covariances_.tobytes().hex(), m.n_iter_)\n")
    fits = {threads: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    env=dict(os.environ, OPENBLAS_NUM_THREADS=threads,
                                             PYTHONPATH=str(ROOT / "src"))).stdout
            for threads in ("1", "2")}  # unlimited, the two differ at 30 000 codes (latent.gmm_images)
    assert fits["1"] == fits["2"]
