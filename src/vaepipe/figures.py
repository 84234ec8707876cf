"""The notes' figures: samples (fig. 6), reconstructions, the 3 → 8 morph (fig. 7) and the
projection of the means by epoch (fig. 8, with the bubbles of figs. 3 and 5 when d = 2).

Digit figures are drawn pixel-exact: every digit is upscaled by SCALE with nearest
neighbours, so a grid of r × c digits is `grid_size(r, c)` pixels plus the title band.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from vaepipe.atomic import atomic_path  # noqa: E402
from vaepipe.data import SIDE  # noqa: E402
from vaepipe.errors import UserError  # noqa: E402

SCALE = 3          # screen pixels per image pixel
GAP = 4            # pixels between digits
TITLE_BAND = 40    # pixels above a digit grid for its title
LABEL_BAND = 150   # pixels left of a grid whose rows are named
DPI = 100
PANEL_WIDTH = 420  # pixels per epoch panel of the projection figure
MAX_SIDE = (1 << 16) - 1  # the most pixels a side Agg can draw
STYLE = {"font.size": 11, "axes.titlesize": 12, "figure.titlesize": 13,
         "axes.spines.top": False, "axes.spines.right": False, "font.family": "DejaVu Sans"}
DIGIT_COLOURS = plt.get_cmap("tab10")


def grid_size(rows: int, cols: int) -> tuple[int, int]:
    """(height, width) in pixels of a grid of digits, gaps included."""
    cell = SIDE * SCALE
    return rows * cell + (rows + 1) * GAP, cols * cell + (cols + 1) * GAP


def figure_size(rows: int, cols: int, named: bool) -> tuple[int, int]:
    """(height, width) in pixels of a digit figure: the grid, its title band and row names."""
    height, width = grid_size(rows, cols)
    return height + TITLE_BAND, width + (LABEL_BAND if named else 0)


def sample_columns(samples: int) -> int:
    return math.ceil(math.sqrt(samples))


def digit_figures(options) -> list[tuple[str, int, tuple[int, int]]]:
    """The generate stage's figures: (the param that sizes it, decodings, (height, width))."""
    cols = sample_columns(options.samples)
    return [("generate.samples", options.samples,
             figure_size(math.ceil(options.samples / cols), cols, False)),
            ("generate.reconstructions", options.reconstructions,
             figure_size(2, options.reconstructions, True)),
            ("generate.morph.steps", options.morph.steps, figure_size(2, options.morph.steps, True))]


def tile(images: torch.Tensor, cols: int) -> np.ndarray:
    """Images [N, 784] in [0, 1] as one upscaled grid, row by row, on a mid-grey ground."""
    rows = math.ceil(len(images) / cols)
    height, width = grid_size(rows, cols)
    cell = SIDE * SCALE
    canvas = np.full((height, width), 0.35, dtype=np.float32)
    digits = images.detach().cpu().float().clamp(0, 1).view(-1, SIDE, SIDE).numpy()
    for i, digit in enumerate(digits):
        r, c = divmod(i, cols)
        top, left = GAP + r * (cell + GAP), GAP + c * (cell + GAP)
        canvas[top:top + cell, left:left + cell] = np.kron(digit, np.ones((SCALE, SCALE)))
    return canvas


def save_digit_figure(path, grid: np.ndarray, title: str, row_names: list[str] | None = None) -> None:
    """A digit grid at 1:1 pixels under a title, its rows named at the left when given."""
    height, width = grid.shape
    left = LABEL_BAND if row_names else 0  # figure_size gives the whole figure's size
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=((width + left) / DPI, (height + TITLE_BAND) / DPI), dpi=DPI)
        ax = fig.add_axes((left / (width + left), 0, width / (width + left), height / (height + TITLE_BAND)))
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_axis_off()
        fig.suptitle(title, y=1 - 0.5 * TITLE_BAND / (height + TITLE_BAND), va="center")
        for i, name in enumerate(row_names or []):
            rows = len(row_names)
            fig.text(left / (width + left) - 0.01, (rows - i - 0.5) / rows * height / (height + TITLE_BAND),
                     name, ha="right", va="center")
        save_figure(fig, path)


def save_figure(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)


# --- generate --------------------------------------------------------------------------

def first_of_each(labels: torch.Tensor, start: int, end: int) -> tuple[int, int]:
    """Indices of the first test image labelled `start` and the first labelled `end`."""
    indices = []
    for digit in (start, end):
        found = (labels == digit).nonzero()
        if len(found) == 0:
            raise UserError(f"generate.morph: the test set has no image labelled {digit}; "
                            "choose digits it holds")
        indices.append(int(found[0, 0]))
    return indices[0], indices[1]


@torch.no_grad()
def morph(model, a: torch.Tensor, b: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Figure 7: decodings along the straight line between μ(a) and μ(b), and the pixel
    blend of a and b with the same weights."""
    model.eval()
    t = torch.linspace(0, 1, steps, device=a.device).unsqueeze(1)
    mu, _ = model.encode(torch.stack([a, b]))
    latent = model.decode((1 - t) * mu[0] + t * mu[1])
    return latent, (1 - t) * a + t * b


def generate_figures(model, test_x: torch.Tensor, test_labels: torch.Tensor, options, seed: int,
                     folder) -> None:
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    samples = model.sample(options.samples, generator)
    cols = sample_columns(options.samples)
    save_digit_figure(folder / "samples.png", tile(samples, cols),
                      f"Decodings of z ~ N(0, I): {options.samples} samples")

    n = options.reconstructions
    with torch.no_grad():
        originals = test_x[:n].to(device)
        reconstructions = model.eval().decode(model.encode(originals)[0])
    save_digit_figure(folder / "reconstructions.png", tile(torch.cat([originals, reconstructions]), n),
                      "Test images (top) and their reconstructions from z = μ (bottom)",
                      ["test image", "reconstruction"])

    m = options.morph
    i, j = first_of_each(test_labels, m.start, m.end)
    latent, pixels = morph(model, test_x[i].to(device), test_x[j].to(device), m.steps)
    save_digit_figure(folder / "morph.png", tile(torch.cat([latent, pixels]), m.steps),
                      f"Morphing the test set's first {m.start} into its first {m.end}",
                      ["latent path", "pixel blend"])


# --- project ---------------------------------------------------------------------------

def project_means(mu: np.ndarray, method: str, seed: int) -> np.ndarray:
    """2-D coordinates of the means: μ itself when d = 2, else t-SNE (as the notebook) or PCA."""
    if mu.shape[1] == 2:
        return mu
    if method == "pca":
        from sklearn.decomposition import PCA
        return PCA(n_components=2, random_state=seed).fit_transform(mu)
    from sklearn.manifold import TSNE
    perplexity = min(30.0, (len(mu) - 1) / 3)
    return TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(mu)


def projection_rows(snapshots: dict[int, dict], points: int, method: str, seed: int) -> list[dict]:
    rows = []
    for epoch, snapshot in snapshots.items():
        mu = snapshot["mu"][:points].double().numpy()
        xy = project_means(mu, method, seed)
        labels = snapshot["labels"][:points].tolist()
        rows += [{"epoch": epoch, "x": float(x), "y": float(y), "label": label}
                 for (x, y), label in zip(xy, labels)]
    return rows


def save_projection_figure(path, rows: list[dict], snapshots: dict[int, dict], method: str,
                           bubbles: int) -> None:
    epochs = list(snapshots)
    direct = next(iter(snapshots.values()))["mu"].shape[1] == 2
    axis_name = "μ" if direct else {"tsne": "t-SNE", "pca": "PCA"}[method]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(epochs), figsize=(PANEL_WIDTH / DPI * len(epochs), 4.6), dpi=DPI,
                                 squeeze=False, layout="constrained")
        for ax, epoch in zip(axes[0], epochs):
            points = [r for r in rows if r["epoch"] == epoch]
            xy = np.array([(r["x"], r["y"]) for r in points])
            labels = np.array([r["label"] for r in points])
            if direct and bubbles:
                _draw_bubbles(ax, snapshots[epoch], bubbles)
            ax.scatter(xy[:, 0], xy[:, 1], c=DIGIT_COLOURS(labels), s=6, linewidths=0)
            ax.set_title(f"epoch {epoch}" + (" (untrained)" if epoch == 0 else ""))
            ax.set_xlabel(f"{axis_name} 1")
            ax.set_ylabel(f"{axis_name} 2")
            if direct:
                ax.set_aspect("equal", adjustable="datalim")
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=DIGIT_COLOURS(k), label=str(k))
                   for k in range(10)]
        fig.legend(handles=handles, title="label", loc="outside right center")
        what = "the means μ" if direct else f"{axis_name} projection of the means μ"
        fig.suptitle(f"Latent space by epoch: {what} of {len(xy)} test images")
        save_figure(fig, path)


def _draw_bubbles(ax, snapshot: dict, count: int) -> None:
    """±σ ellipses around μ: the "bubbles" of the notes' figures 3 and 5."""
    mu = snapshot["mu"][:count].numpy()
    sigma = snapshot["logvar"][:count].mul(0.5).exp().numpy()
    labels = snapshot["labels"][:count].numpy()
    for (x, y), (sx, sy), label in zip(mu, sigma, labels):
        ax.add_patch(Ellipse((x, y), 2 * sx, 2 * sy, facecolor=DIGIT_COLOURS(label), alpha=0.12,
                             edgecolor=DIGIT_COLOURS(label), linewidth=0.5))
