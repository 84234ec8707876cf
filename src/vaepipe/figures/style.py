"""What every figure shares: the style, digit grids drawn pixel-exact, atomic PNG writes.

Digit figures are drawn pixel-exact: every digit is upscaled by SCALE with nearest
neighbours, so a grid of r × c digits is `grid_size(r, c)` pixels plus the title band.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vaepipe.atomic import atomic_path  # noqa: E402
from vaepipe.layout import SIDE, image_shape  # noqa: E402
from vaepipe.model.network import Footprint  # noqa: E402
from vaepipe.resources import FLOAT
from vaepipe.errors import UserError

SCALE = 3          # screen pixels per image pixel
GAP = 4            # pixels between digits
TITLE_BAND = 40    # pixels above a digit grid for its title
LABEL_BAND = 150   # pixels left of a grid whose rows are named
DPI = 100
MAX_SIDE = (1 << 16) - 1  # the most pixels a side Agg can draw
GREY = plt.get_cmap("gray")(np.arange(256), bytes=True)  # its 256 RGBA levels: [0, 1] → ⌊256·x⌋
STYLE = {"font.size": 11, "axes.titlesize": 12, "figure.titlesize": 13,
         "axes.spines.top": False, "axes.spines.right": False, "font.family": "DejaVu Sans"}


def grid_size(rows: int, cols: int, side: int = SIDE) -> tuple[int, int]:
    """(height, width) in pixels of a grid of side × side images, gaps included."""
    cell = side * SCALE
    return rows * cell + (rows + 1) * GAP, cols * cell + (cols + 1) * GAP


def figure_size(rows: int, cols: int, named: bool, side: int = SIDE) -> tuple[int, int]:
    """(height, width) in pixels of a digit figure: the grid, its title band and row names."""
    height, width = grid_size(rows, cols, side)
    return height + TITLE_BAND, width + (LABEL_BAND if named else 0)


def sample_columns(samples: int) -> int:
    return math.ceil(math.sqrt(samples))


def tile(images, cols: int) -> np.ndarray:
    """Images [N, channels·side²] in [0, 1] (an array, or a CPU tensor without gradient) as
    one upscaled grid, row by row, on a mid-grey ground: [height, width] for grey images,
    [height, width, 3] for colour. Free of PyTorch, like all of this module: the project
    stage draws without importing it."""
    rows, (channels, side) = math.ceil(len(images) / cols), image_shape(images.shape[-1])
    height, width = grid_size(rows, cols, side)
    cell = side * SCALE
    canvas = np.full((height, width, channels), 0.35, dtype=np.float32)
    digits = np.clip(np.asarray(images, dtype=np.float32), 0, 1).reshape(-1, channels, side, side)
    for i, digit in enumerate(digits.transpose(0, 2, 3, 1)):  # planes to pixels of `channels` values
        r, c = divmod(i, cols)
        top, left = GAP + r * (cell + GAP), GAP + c * (cell + GAP)
        canvas[top:top + cell, left:left + cell] = np.kron(digit, np.ones((SCALE, SCALE, 1)))
    return canvas[..., 0] if channels == 1 else canvas


def save_digit_figure(path, grid: np.ndarray, title: str, row_names: list[str] | None = None) -> None:
    """A digit grid at 1:1 pixels under a title, its rows named at the left when given.

    The text is drawn by matplotlib; the grid's pixels are then written into the drawn
    canvas as the gray colormap colours them (a colour grid's channels each the same way).
    imshow would draw the same pixels, but only after resampling a float copy of the whole
    grid, the largest allocation of its stage.
    """
    height, width = grid.shape[:2]
    left = LABEL_BAND if row_names else 0  # figure_size gives the whole figure's size
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=((width + left) / DPI, (height + TITLE_BAND) / DPI), dpi=DPI)
        # titles and row names carry class names (a user's folder names): text, never math
        fig.suptitle(title, y=1 - 0.5 * TITLE_BAND / (height + TITLE_BAND), va="center", parse_math=False)
        for i, name in enumerate(row_names or []):
            rows = len(row_names)
            fig.text(left / (width + left) - 0.01, (rows - i - 0.5) / rows * height / (height + TITLE_BAND),
                     name, ha="right", va="center", parse_math=False)
        fig.canvas.draw()
        canvas = np.asarray(fig.canvas.buffer_rgba())
        drawn = ~np.isnan(grid if grid.ndim == 2 else grid[..., 0])  # NaN cells are blank: the background shows
        levels = np.minimum(grid[drawn] * len(GREY), len(GREY) - 1).astype(int)  # [0, 1] → ⌊256·x⌋
        canvas[TITLE_BAND:, left:][drawn] = GREY[levels] if grid.ndim == 2 else np.append(
            GREY[levels, 0], np.full((len(levels), 1), 255, np.uint8), axis=1)
        with atomic_path(path) as tmp:
            matplotlib.image.imsave(tmp, canvas, format="png", dpi=DPI, metadata={"Software": None})
        plt.close(fig)


def save_figure(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def digit_figure_needs(network: Footprint, figures) -> dict[str, float]:
    """Each digit figure's decodings (what one decoding of `network` makes, each), its float
    grid and RGBA canvas, for `figures` given as (the param key that sizes it, decodings,
    (height, width)); a figure wider or taller than Agg can draw is refused."""
    needs = {}
    for key, count, (height, width) in figures:
        if max(height, width) > MAX_SIDE:
            raise UserError(f"{key}: makes a figure of {width}×{height} pixels; matplotlib draws "
                            f"at most {MAX_SIDE} a side; lower {key}")
        needs[key] = count * network.decoding * FLOAT + height * width * 4 * FLOAT
    return needs
