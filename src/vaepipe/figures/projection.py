"""The project stage's figure: the test set's means by epoch in 2-D (the notes' figure 8),
with the ±σ bubbles of figures 3 and 5 when d = 2."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from matplotlib.patches import Ellipse

from vaepipe.figures.style import DPI, MAX_SIDE, STYLE, plt, save_figure
from vaepipe.errors import UserError
from vaepipe.resources import available_cores

PANEL_WIDTH = 420  # pixels per epoch panel of the projection figure
LEGEND_CLASSES = 20  # more classes than this are coloured but not listed
# OpenMP threads of one t-SNE fit: its threads' partial sums are added in the order they
# finish, which two threads cannot change (a + b = b + a) and three can
FIT_THREADS = 2


def label_colours(classes: int):
    """RGBA colours by label: tab10 up to 10 classes (the notebook's), tab20 up to 20, else
    spread around the hue circle; dark grey for unlabelled images (label −1)."""
    palette = plt.get_cmap("tab10" if classes <= 10 else "tab20" if classes <= 20 else "hsv")

    def colours(labels):
        labels = np.asarray(labels)
        rgba = np.array(palette(labels if classes <= 20 else labels / classes))
        rgba[labels < 0] = (0.3, 0.3, 0.3, 1.0)
        return rgba
    return colours


def project_means(mu: np.ndarray, method: str, seed: int, threads: int = FIT_THREADS) -> np.ndarray:
    """2-D coordinates of the means: μ itself when d = 2, else t-SNE (as the notebook, on
    `threads` OpenMP threads of the calling thread) or PCA."""
    if mu.shape[1] == 2:
        return mu
    if method == "pca":
        from sklearn.decomposition import PCA
        return PCA(n_components=2, random_state=seed).fit_transform(mu)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits
    perplexity = min(30.0, (len(mu) - 1) / 3)
    with threadpool_limits(limits=threads, user_api="openmp"):  # OpenMP's limit is per thread
        return TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(mu)


def projection_rows(snapshots: dict[int, dict], points: int, method: str, seed: int) -> list[dict]:
    """Every epoch's means in 2-D. The fits run at once, each on its share of the cores:
    t-SNE's gradient releases the GIL, and one fit alone leaves a core idle in its serial
    parts (on 2 cores, three fits at once took 5.8–6.3 s, one after another 6.5–7.5 s)."""
    means = [snapshot["mu"][:points].astype(np.float64) for snapshot in snapshots.values()]
    threads = max(1, min(FIT_THREADS, available_cores() // len(means)))
    with ThreadPoolExecutor(len(means)) as pool:
        projected = list(pool.map(lambda mu: project_means(mu, method, seed, threads), means))
    rows = []
    for (epoch, snapshot), xy in zip(snapshots.items(), projected):
        labels = snapshot["labels"][:points].tolist()
        rows += [{"epoch": epoch, "x": float(x), "y": float(y), "label": label}
                 for (x, y), label in zip(xy, labels)]
    return rows


def save_projection_figure(path, rows: list[dict], snapshots: dict[int, dict], method: str,
                           bubbles: int, classes: list[str]) -> None:
    epochs, colours = list(snapshots), label_colours(len(classes))
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
                _draw_bubbles(ax, snapshots[epoch], bubbles, colours)
            ax.scatter(xy[:, 0], xy[:, 1], c=colours(labels), s=6, linewidths=0)
            ax.set_title(f"epoch {epoch}" + (" (untrained)" if epoch == 0 else ""))
            ax.set_xlabel(f"{axis_name} 1")
            ax.set_ylabel(f"{axis_name} 2")
            if direct:
                ax.set_aspect("equal", adjustable="datalim")
        if 0 < len(classes) <= LEGEND_CLASSES:
            handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours(k), label=name)
                       for k, name in enumerate(classes)]
            legend = fig.legend(handles=handles, title="label", loc="outside right center")
            for text in legend.get_texts():
                text.set_parse_math(False)  # class names are a user's folder names: text, never math
        what = "the means μ" if direct else f"{axis_name} projection of the means μ"
        fig.suptitle(f"Latent space by epoch: {what} of {len(xy)} test images")
        save_figure(fig, path)


def _draw_bubbles(ax, snapshot: dict, count: int, colours) -> None:
    """±σ ellipses around μ: the "bubbles" of the notes' figures 3 and 5."""
    mu = snapshot["mu"][:count]
    sigma = np.exp(snapshot["logvar"][:count] * np.float32(0.5))
    labels = snapshot["labels"][:count]
    for (x, y), (sx, sy), label in zip(mu, sigma, labels):
        ax.add_patch(Ellipse((x, y), 2 * sx, 2 * sy, facecolor=colours(label), alpha=0.12,
                             edgecolor=colours(label), linewidth=0.5))


def projection_needs(d: int, points: int, n_test: int, panels: int) -> dict[str, float]:
    """Project: t-SNE's neighbour graph (3 × perplexity 30 per point) and the figure."""
    if panels * PANEL_WIDTH > MAX_SIDE:
        raise UserError(f"project.epochs: {panels} panels make a figure {panels * PANEL_WIDTH} "
                        f"pixels wide; matplotlib draws at most {MAX_SIDE}; list fewer epochs")
    return {"project.points": min(points, n_test) * (d + 4 * 90) * 8 * 3}
