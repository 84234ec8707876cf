"""The notes' network as numbers, without PyTorch: its layer widths, from which `model.VAE`
is built and which the memory estimates count. Encoder: pixels → hidden… → 2d (μ and
log σ²); decoder: d → the hidden widths reversed → pixels. The notes: one hidden layer of
d² units."""

from __future__ import annotations


def hidden_widths(d: int, hidden: list[int] | None = None) -> list[int]:
    """The hidden layers' widths, input side first; None = the notes' one layer of d²."""
    return list(hidden) if hidden is not None else [d ** 2]


def layer_widths(d: int, pixels: int, hidden: list[int] | None = None) -> tuple[list[int], list[int]]:
    """(the encoder's widths, the decoder's widths), each from input to output."""
    widths = hidden_widths(d, hidden)
    return [pixels, *widths, 2 * d], [d, *reversed(widths), pixels]


def parameter_count(d: int, pixels: int, hidden: list[int] | None = None) -> int:
    """Weights and biases of both networks."""
    return sum((n_in + 1) * n_out for net in layer_widths(d, pixels, hidden) for n_in, n_out in zip(net, net[1:]))


def decode_floats(count: int, d: int, pixels: int, hidden: list[int] | None = None) -> int:
    """Activations of decoding `count` codes: z, the hidden layers, logits and pixels."""
    return count * (d + sum(hidden_widths(d, hidden)) + 2 * pixels)
