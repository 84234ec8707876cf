"""Memory a stage will need, estimated from params before any of it is allocated.

Each estimate names the params that drive it, so a value too large for this machine stops
the stage with one line naming the key, the estimate and the limit, instead of a traceback
from the allocator minutes later. The estimates are upper bounds of the large tensors a
stage holds at once (float32), not of Python's own few hundred MB.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vaepipe.errors import UserError

if TYPE_CHECKING:  # torch is imported only to ask a GPU: the download stage runs without it
    import torch

FLOAT = 4  # bytes per float32
GB = 1 << 30


def available_memory(device: torch.device | None = None) -> int:
    """Bytes a stage may allocate: free GPU memory on CUDA, else the host's available RAM."""
    if device is not None and device.type == "cuda":
        import torch
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def size(nbytes: float) -> str:
    return f"{nbytes / GB:.1f} GB" if nbytes >= GB / 10 else f"{nbytes / (1 << 20):.0f} MB"


def check_fits(needs: dict[str, float], device: torch.device | None = None) -> None:
    """`needs` maps a param key to the bytes it makes the stage allocate; all of them must
    fit together. Names the largest when they do not."""
    limit = available_memory(device)
    total = sum(needs.values())
    if total > limit:
        key = max(needs, key=needs.get)
        where = "GPU memory free" if device is not None and device.type == "cuda" else "memory available"
        raise UserError(f"{key}: needs about {size(needs[key])} ({size(total)} for the stage in all), "
                        f"more than the {size(limit)} of {where}; lower {key}")


# --- the model of the notes: Linear(784, d²) → ReLU → Linear(d², 2d); Linear(d, d²) → ReLU → Linear(d², 784)

def model_floats(d: int, pixels: int = 784) -> int:
    hidden = d * d
    return (pixels + 1) * hidden + (hidden + 1) * 2 * d + (d + 1) * hidden + (hidden + 1) * pixels


def decode_floats(count: int, d: int, pixels: int = 784) -> int:
    """Activations of decoding `count` codes: z, the hidden layer, logits and pixels."""
    return count * (d + d * d + 2 * pixels)


def training_needs(d: int, batch_size: int, epochs: int, n_train: int, n_test: int,
                   pixels: int = 784) -> dict[str, float]:
    """Train: the data; the model with its gradient and Adam's two moments; one batch's
    activations forward and backward; the test set scored in chunks; the test codes of
    every epoch."""
    from vaepipe.metrics import CHUNK
    hidden = d * d
    per_image = 2 * (pixels + hidden + 2 * d + d + hidden + 2 * pixels)  # forward + gradients
    return {"data.dataset": (n_train + n_test) * pixels * FLOAT,
            "d": 4 * model_floats(d, pixels) * FLOAT + min(n_test, CHUNK) * per_image * FLOAT,
            "train.batch_size": min(batch_size, n_train) * per_image * FLOAT,
            "epochs": (epochs + 1) * n_test * 2 * d * FLOAT}


def classifier_needs(batch_size: int, n_train: int) -> dict[str, float]:
    """Classifier: one batch's activations (conv 16×14×14, conv 32×7×7, 128 features,
    each before and after its ReLU) forward and backward."""
    per_image = 2 * 2 * (16 * 14 * 14 + 32 * 7 * 7 + 128 + 10)
    return {"classifier.batch_size": min(batch_size, n_train) * per_image * FLOAT}


def evaluate_needs(d: int, fd_samples: int, n_test: int) -> dict[str, float]:
    """Evaluate: the bound and the ELBO decode in passes of a fixed size whatever k is; the
    Fréchet distance keeps 128 features per sample and per test image, twice in float64."""
    from vaepipe.metrics import CHUNK
    features = 128 * (FLOAT + 2 * 8)
    return {"d": model_floats(d) * FLOAT + 3 * decode_floats(CHUNK, d) * FLOAT,
            "evaluate.fd_samples": fd_samples * (d * FLOAT + features) + n_test * features}


def digit_figure_needs(d: int, figures) -> dict[str, float]:
    """Each digit figure's decodings, its float grid and RGBA canvas, for `figures` given as
    (the param key that sizes it, decodings, (height, width)); a figure wider or taller than
    Agg can draw is refused."""
    from vaepipe.figures import MAX_SIDE
    needs = {}
    for key, count, (height, width) in figures:
        if max(height, width) > MAX_SIDE:
            raise UserError(f"{key}: makes a figure of {width}×{height} pixels; matplotlib draws "
                            f"at most {MAX_SIDE} a side; lower {key}")
        needs[key] = decode_floats(count, d) * FLOAT + height * width * 4 * FLOAT
    return needs


def generate_needs(d: int, options) -> dict[str, float]:
    """Generate: its three digit figures."""
    from vaepipe.generation import digit_figures
    return digit_figure_needs(d, digit_figures(options))


def latent_needs(d: int, options, fd_samples: int, n_train: int) -> dict[str, float]:
    """Latent: its traversal and manifold figures, the fitted
    training images and their μ in float64, the mixture's per-component work on them
    (scikit-learn keeps an N × d centred copy and N × K responsibilities), and the scored
    mixture samples."""
    from vaepipe.latent import digit_figures
    needs = digit_figure_needs(d, digit_figures(options, d))
    fitted = min(options.gmm_images, n_train)
    if options.gmm_components > fitted:
        raise UserError(f"latent.gmm_components: {options.gmm_components} components for "
                        f"{fitted} training images; use at most {fitted}")
    needs["latent.gmm_images"] = fitted * 784 * FLOAT
    needs["latent.gmm_components"] = fitted * (3 * d + 3 * options.gmm_components) * 8 + options.gmm_components * d * d * 8
    needs["evaluate.fd_samples"] = fd_samples * (2 * d * 8 + 128 * (FLOAT + 2 * 8))
    return needs


def projection_needs(d: int, points: int, n_test: int, panels: int) -> dict[str, float]:
    """Project: t-SNE's neighbour graph (3 × perplexity 30 per point) and the figure."""
    from vaepipe.figures import MAX_SIDE
    from vaepipe.projection import PANEL_WIDTH
    if panels * PANEL_WIDTH > MAX_SIDE:
        raise UserError(f"project.epochs: {panels} panels make a figure {panels * PANEL_WIDTH} "
                        f"pixels wide; matplotlib draws at most {MAX_SIDE}; list fewer epochs")
    return {"project.points": min(points, n_test) * (d + 4 * 90) * 8 * 3}
