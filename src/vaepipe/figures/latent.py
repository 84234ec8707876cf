"""Inside the latent space: why samples look as they do.

- figure 4 of the notes with the model in it: v(σ²) = σ² − log σ² − 1 and every latent
  dimension's mean posterior variance and mean μ² over the test set;
- traversals: μ(x) + t·e_u for t in [−3, 3], one row per dimension, sorted by its KL;
- the 2-D manifold: the decoder over a grid of z through the inverse Gaussian CDF
  (Kingma & Welling 2014, figure 4), over the two dimensions with the most KL;
- the prior hole: samples from a Gaussian mixture fitted to the training set's posterior
  means (ex-post density estimation, Ghosh et al. 2019), scored like prior samples.
"""

from __future__ import annotations

import numpy as np
import torch

from vaepipe.figures.style import (DPI, STYLE, digit_figure_needs, figure_size, plt, save_digit_figure, save_figure,
                             tile)
from vaepipe.layout import side_of
from vaepipe.model.loss import kl_per_dim
from vaepipe.model.network import Footprint
from vaepipe.resources import FLOAT
from vaepipe.errors import UserError
from vaepipe.params import LatentParams

TRAVERSAL_RANGE = 3.0  # t from −3 to 3 prior standard deviations, as traversal figures use
MANIFOLD_EDGE = 0.05   # grid quantiles from 5 % to 95 %: Φ⁻¹ of 0 and 1 is infinite


def dimension_stats(mu: torch.Tensor, logvar: torch.Tensor) -> list[dict]:
    """Per latent dimension over the test set: mean σ², the mean variance term
    σ² − log σ² − 1 (figure 4's v), the mean μ², and the mean KL = ½ (v + μ²)."""
    variance = logvar.double().exp()
    v = variance - logvar.double() - 1
    kl = kl_per_dim(mu.double(), logvar.double())
    return [{"dim": u, "variance": variance[:, u].mean().item(), "v": v[:, u].mean().item(),
             "mu2": mu[:, u].double().pow(2).mean().item(), "kl": kl[:, u].mean().item()}
            for u in range(mu.shape[1])]


def save_kl_figure(path, stats: list[dict]) -> None:
    """Figure 4 of the notes: the curve v(σ²) and each dimension at its mean σ², its bar
    rising by its mean μ² (the whole bar is 2·KL). Inactive units sit at σ² = 1, v = 0."""
    variance = np.geomspace(1e-3, 4, 400)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=DPI, layout="constrained")
        ax.plot(variance, variance - np.log(variance) - 1, color="0.3", label="v = σ² − log σ² − 1")
        for row in stats:
            x, v, top = row["variance"], row["v"], row["v"] + row["mu2"]
            ax.plot([x, x], [v, top], color="tab:orange", linewidth=1.5)
            ax.plot(x, v, "o", color="tab:blue", markersize=5)
            ax.annotate(str(row["dim"]), (x, top), textcoords="offset points", xytext=(3, 2), fontsize=8)
        ax.plot([], [], "o", color="tab:blue", label="a dimension: mean σ², mean v over the test set")
        ax.plot([], [], color="tab:orange", label="+ its mean μ² (the bar is 2·KL)")
        ax.set_xscale("log")
        ax.set_xlabel("posterior variance σ²")
        ax.set_ylabel("nats (×2)")
        ax.set_title("The KL term per latent dimension (notes' figure 4)")
        ax.legend(loc="upper center")
        save_figure(fig, path)


def by_kl(stats: list[dict], count: int) -> list[dict]:
    """The `count` dimensions with the most KL, most first."""
    return sorted(stats, key=lambda row: -row["kl"])[:count]


@torch.no_grad()
def traversal_images(model, x: torch.Tensor, dims: list[int], steps: int) -> torch.Tensor:
    """Decodings of μ(x) + t·e_u, t from −3 to 3: [len(dims), len(x), steps, 784]."""
    model.eval()
    mu, _ = model.encode(x)
    t = torch.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, steps, device=mu.device)
    codes = mu[None, :, None, :].repeat(len(dims), 1, steps, 1)   # [dims, images, steps, d]
    for row, u in enumerate(dims):
        codes[row, :, :, u] += t
    return model.decode(codes.reshape(-1, mu.shape[1])).view(len(dims), len(x), steps, -1)


def save_traversal_figure(path, images: torch.Tensor, rows: list[dict]) -> None:
    """One row per dimension, each image's traversal as a block of columns, blocks
    separated by an empty cell; rows labelled with their dimension and KL."""
    dims, count, steps, pixels = images.shape
    blank = torch.full((dims, 1, pixels), float("nan"))
    blocks = [torch.cat([images[:, i], blank], dim=1) for i in range(count)]
    grid = torch.cat(blocks, dim=1)[:, :-1]  # [dims, count·(steps + 1) − 1, 784]
    cols = grid.shape[1]
    save_digit_figure(path, tile(grid.reshape(-1, pixels), cols),
                      f"Traversals: μ(x) + t·e_u, t from −{TRAVERSAL_RANGE:g} to {TRAVERSAL_RANGE:g}, "
                      "rows by KL", [f"z{row['dim']}: KL {row['kl']:.2f}" for row in rows])


def latent_figure_sizes(options: LatentParams, d: int, side: int) -> list[tuple[str, int, tuple[int, int]]]:
    """The traversal and manifold figures: (the param that sizes it, decodings, (height, width))."""
    rows, cols = min(options.traversal_dims, d), options.traversal_images * (options.traversal_steps + 1) - 1
    return [("latent.traversal_steps", rows * options.traversal_images * options.traversal_steps,
             figure_size(rows, cols, True, side)),
            ("latent.manifold_steps", options.manifold_steps ** 2,
             figure_size(options.manifold_steps, options.manifold_steps, False, side))]


def manifold_codes(d: int, dims: tuple[int, int], steps: int) -> torch.Tensor:
    """A steps × steps grid of z over `dims` through Φ⁻¹ (other dimensions at the prior's
    mean 0), row by row from the top: z[dims[1]] falls down the rows, z[dims[0]] rises
    along them."""
    normal = torch.distributions.Normal(0.0, 1.0)
    q = normal.icdf(torch.linspace(MANIFOLD_EDGE, 1 - MANIFOLD_EDGE, steps, dtype=torch.float64))
    z = torch.zeros(steps, steps, d, dtype=torch.float64)
    z[:, :, dims[0]] = q[None, :]
    z[:, :, dims[1]] = q.flip(0)[:, None]
    return z.reshape(-1, d).float()


@torch.no_grad()
def manifold_images(model, dims: tuple[int, int], steps: int) -> torch.Tensor:
    model.eval()
    return model.decode(manifold_codes(model.d, dims, steps).to(next(model.parameters()).device))


def save_manifold_figure(path, model, dims: tuple[int, int], steps: int) -> None:
    images = manifold_images(model, dims, steps)
    what = "z" if model.d == 2 else f"z{dims[0]} and z{dims[1]} (the most KL; the rest 0)"
    save_digit_figure(path, tile(images.cpu(), steps),
                      f"The decoder over Φ⁻¹ of a {steps}×{steps} grid of {what}")


# --- the prior hole --------------------------------------------------------------------------

def fit_mixture(codes: np.ndarray, components: int, seed: int):
    """A full-covariance Gaussian mixture fitted to posterior means (scikit-learn), on one
    BLAS thread: on d × d matrices, waking OpenBLAS's threads costs more than they give
    (the fit takes half the time), and the bits no longer depend on the number of cores."""
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        return GaussianMixture(n_components=components, covariance_type="full", random_state=seed,
                               reg_covar=1e-5).fit(codes)


def sample_mixture(mixture, count: int, generator: torch.Generator) -> torch.Tensor:
    """count draws from the fitted mixture, in random order: a component by its weight,
    then its mean + its Cholesky factor · ε."""
    weights = torch.as_tensor(mixture.weights_, dtype=torch.float64)
    means = torch.as_tensor(mixture.means_, dtype=torch.float64)
    factors = torch.linalg.cholesky(torch.as_tensor(mixture.covariances_, dtype=torch.float64))
    component = torch.multinomial(weights, count, replacement=True, generator=generator)
    eps = torch.randn(count, means.shape[1], 1, generator=generator, dtype=torch.float64)
    return (means[component] + (factors[component] @ eps).squeeze(-1)).float()


def mixture_record(mixture) -> dict:
    """The fitted mixture as plain numbers (weights, means, Cholesky factors of the
    covariances): what the explorer's "sample the mixture" button draws from."""
    factors = np.linalg.cholesky(mixture.covariances_)
    return {"weights": mixture.weights_.tolist(), "means": mixture.means_.tolist(), "cholesky": factors.tolist()}


def latent_needs(network: Footprint, d: int, options: LatentParams, n_train: int, pixels: int) -> dict[str, float]:
    """Latent: its traversal and manifold figures, the fitted training images and their μ in
    float64, and the mixture's per-component work on them (scikit-learn keeps an N × d
    centred copy and N × K responsibilities); the scored mixture samples are
    `classifier.scoring_needs`."""
    needs = digit_figure_needs(network, latent_figure_sizes(options, d, side_of(pixels)))
    fitted = min(options.gmm_images, n_train)
    if options.gmm_components > fitted:
        raise UserError(f"latent.gmm_components: {options.gmm_components} components for "
                        f"{fitted} training images; use at most {fitted}")
    needs["latent.gmm_images"] = fitted * pixels * FLOAT
    components = options.gmm_components
    needs["latent.gmm_components"] = fitted * (3 * d + 3 * components) * 8 + components * d * d * 8
    return needs
