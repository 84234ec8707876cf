"""The generate stage's figures: samples (the notes' figure 6), reconstructions, and the
3 → 8 morph (figure 7)."""

from __future__ import annotations

import math

import torch

from vaepipe.data.splits import unit
from vaepipe.errors import UserError
from vaepipe.layout import side_of
from vaepipe.figures.style import digit_figure_needs, figure_size, sample_columns, save_digit_figure, tile
from vaepipe.model.network import Footprint
from vaepipe.params import GenerateParams


def generate_figure_sizes(options: GenerateParams, side: int) -> list[tuple[str, int, tuple[int, int]]]:
    """The generate stage's figures: (the param that sizes it, decodings, (height, width))."""
    cols = sample_columns(options.samples)
    return [("generate.samples", options.samples,
             figure_size(math.ceil(options.samples / cols), cols, False, side)),
            ("generate.reconstructions", options.reconstructions,
             figure_size(2, options.reconstructions, True, side)),
            ("generate.morph.steps", options.morph.steps, figure_size(2, options.morph.steps, True, side))]


def morph_ends(labels: torch.Tensor, classes: list[str], start: int, end: int) -> tuple[tuple[int, int], str]:
    """The indices of the first test image labelled `start` and the first labelled `end`
    (of test images number `start` and `end` when unlabelled), and the figure's title.
    Labels wrap around the classes: the defaults 3 and 8 are classes 0 and 2 of three."""
    if not classes:
        if max(start, end) >= len(labels):
            raise UserError(f"generate.morph: the test set has {len(labels)} images; "
                            f"choose start and end below {len(labels)}")
        return (start, end), f"Morphing test image {start} into test image {end}"
    start, end = start % len(classes), end % len(classes)
    indices = []
    for label in (start, end):
        found = (labels == label).nonzero()
        if len(found) == 0:
            raise UserError(f"generate.morph: the test set has no image labelled {label}; "
                            f"choose labels it holds (0 to {len(classes) - 1}: {', '.join(classes)[:80]})")
        indices.append(int(found[0, 0]))
    return (indices[0], indices[1]), f"Morphing the test set's first {classes[start]} into its first {classes[end]}"


@torch.no_grad()
def morph(model, a: torch.Tensor, b: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Figure 7: decodings along the straight line between μ(a) and μ(b), and the pixel
    blend of a and b with the same weights."""
    model.eval()
    t = torch.linspace(0, 1, steps, device=a.device).unsqueeze(1)
    mu, _ = model.encode(torch.stack([a, b]))
    latent = model.decode((1 - t) * mu[0] + t * mu[1])
    return latent, (1 - t) * a + t * b


def generate_figures(model, test_x: torch.Tensor, test_labels: torch.Tensor, classes: list[str],
                     options: GenerateParams, seed: int, folder) -> None:
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    samples = model.sample(options.samples, generator)
    cols = sample_columns(options.samples)
    save_digit_figure(folder / "samples.png", tile(samples.cpu(), cols),
                      f"Decodings of z ~ N(0, I): {options.samples} samples")

    n = options.reconstructions
    with torch.no_grad():
        originals = unit(test_x[:n]).to(device)
        reconstructions = model.eval().decode(model.encode(originals)[0])
    save_digit_figure(folder / "reconstructions.png", tile(torch.cat([originals, reconstructions]).cpu(), n),
                      "Test images (top) and their reconstructions from z = μ (bottom)",
                      ["test image", "reconstruction"])

    m = options.morph
    (i, j), title = morph_ends(test_labels, classes, m.start, m.end)
    latent, pixels = morph(model, unit(test_x[i]).to(device), unit(test_x[j]).to(device), m.steps)
    save_digit_figure(folder / "morph.png", tile(torch.cat([latent, pixels]).cpu(), m.steps), title,
                      ["latent path", "pixel blend"])


def generate_needs(network: Footprint, options: GenerateParams, pixels: int) -> dict[str, float]:
    """Generate: its three digit figures."""
    return digit_figure_needs(network, generate_figure_sizes(options, side_of(pixels)))
