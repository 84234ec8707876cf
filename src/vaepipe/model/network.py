"""The notes' network as numbers, without PyTorch: its layer widths, from which `model.VAE`
is built and which the memory estimates count. Encoder: pixels → hidden… → 2d (μ and
log σ²); decoder: d → the hidden widths reversed → pixels. The notes: one hidden layer of
d² units."""

from __future__ import annotations

import math
from dataclasses import dataclass


def hidden_widths(d: int, hidden: list[int] | None = None) -> list[int]:
    """The hidden layers' widths, input side first; None = the notes' one layer of d²."""
    return list(hidden) if hidden is not None else [d ** 2]


def layer_widths(d: int, pixels: int, hidden: list[int] | None = None) -> tuple[list[int], list[int]]:
    """(the encoder's widths, the decoder's widths), each from input to output."""
    widths = hidden_widths(d, hidden)
    return [pixels, *widths, 2 * d], [d, *reversed(widths), pixels]


def parameter_shapes(d: int, pixels: int, hidden: list[int] | None = None) -> dict[str, tuple[int, ...]]:
    """The state dict's names and shapes of the model `model.VAE` builds: a Linear at every
    other place of each Sequential, the activations between them."""
    shapes = {}
    for net, widths in zip(("encoder", "decoder"), layer_widths(d, pixels, hidden)):
        for k, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
            shapes[f"{net}.{2 * k}.weight"], shapes[f"{net}.{2 * k}.bias"] = (n_out, n_in), (n_out,)
    return shapes


def parameter_count(d: int, pixels: int, hidden: list[int] | None = None) -> int:
    """Weights and biases of both networks."""
    return sum(math.prod(shape) for shape in parameter_shapes(d, pixels, hidden).values())


@dataclass(frozen=True)
class Footprint:
    """What a network holds, in floats: its parameters, the values one image's training
    pass makes going forward (encoding, the code, decoding, the loss; its backward makes as
    many again), and the values one code's decoding makes. The memory estimates count these."""

    parameters: int
    forward: int
    decoding: int


def mlp_footprint(d: int, pixels: int, hidden: list[int] | None = None) -> Footprint:
    """The notes' network's, from its widths: every layer's output, each hidden one twice
    (before and after its activation)."""
    widths = hidden_widths(d, hidden)
    return Footprint(parameter_count(d, pixels, hidden), pixels + 2 * sum(widths) + 3 * d + 2 * pixels,
                     d + sum(widths) + 2 * pixels)
