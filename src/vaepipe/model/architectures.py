"""Every architecture the VAE can have, in one place (`arch` in params.yaml).

An architecture is a function `(d, channels, side, hidden, activation, *, options…) ->
(encoder, decoder, hidden)`: the encoder takes images flattened to [N, channels·side²] to
[N, 2d] (μ and log σ² side by side), the decoder takes codes [N, d] to logits
[N, channels·side²], and `hidden` is the widths it used (`hidden: null` in params.yaml asks
for its defaults). A bad side or width is a ValueError whose text names what it can take.

Its own options are its keyword-only parameters: each with its default, and its check as
`Annotated[type, one_of(…)]` or `Annotated[type, number(…)]` (params.yaml's own checks).
`arch_options` in params.yaml sets them, checked when the model is built with the one-line
error of any param; the model saves them with its weights, the ONNX files carry them, and
the explorer shows them. A new knob is a new keyword here and its line in docs/params.md.

Register the function in ARCHITECTURES; everything else follows from the model it builds:
training (autograd, unless it is a chain the written-out backward knows), the memory
estimates (a pass on PyTorch's meta device), the checkpoints' checks, the ONNX export and
the figures.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from collections.abc import Callable
from typing import Annotated

from torch import nn

from vaepipe.errors import ParamsError
from vaepipe.model.network import hidden_widths, layer_widths
from vaepipe.params import check_value, number, one_of, shown

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}  # LeakyReLU: slope 0.01
Built = tuple[list[nn.Module], list[nn.Module], list[int]]


def linear_chain(widths: list[int], activation: str) -> list[nn.Module]:
    """Linear layers through `widths`, the activation between them."""
    out = []
    for n_in, n_out in zip(widths, widths[1:]):
        out += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return out[:-1]


def mlp(d: int, channels: int, side: int, hidden: list[int] | None, activation: str) -> Built:
    """The notes' network: fully connected, one hidden layer of d² units each side by default."""
    encoder, decoder = layer_widths(d, channels * side * side, hidden)
    return linear_chain(encoder, activation), linear_chain(decoder, activation), hidden_widths(d, hidden)


CONV_WIDTHS = [32, 64, 128, 256, 512]  # channels after each halving, as PyTorch-VAE's vanilla VAE
GROUPS = 8  # GroupNorm's groups of channels (fewer where a width is not a multiple of 8)


def normalized(channels: int, norm: str, groups: int) -> list[nn.Module]:
    """The conv network's normalization after each convolution. BatchNorm, the common VAE's:
    in training it normalizes over the batch, at evaluation with its running statistics, so
    a trained model's code of an image never depends on the images beside it. GroupNorm
    normalizes each image by itself, which takes away what an image holds as a whole (its
    ground's colour, its brightness): on tinted digits it learned far less
    (experiments/conv_reference.py, docs/images.md)."""
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    return [nn.GroupNorm(math.gcd(groups, channels), channels)] if norm == "group" else []
SMALLEST_MAP = 4  # the encoder halves the side while it stays even and at least this


def halvings(side: int) -> int:
    count = 0
    while side % 2 == 0 and side // 2 >= SMALLEST_MAP:
        side //= 2
        count += 1
    return count


def conv(d: int, channels: int, side: int, hidden: list[int] | None, activation: str, *,
         norm: Annotated[str, one_of("batch", "group", "none")] = "batch",
         groups: Annotated[int, number(minimum=1, maximum=512)] = GROUPS) -> Built:
    """The common convolutional VAE: 3×3 convolutions of stride 2, each halving the side and
    taking the next width of channels, normalized and activated, down to a map of 4 to 7
    pixels a side, then a linear layer to μ and log σ²; the decoder mirrors it with
    transposed convolutions and a last 3×3 convolution to the image's channels. Depth
    follows the side; `hidden` the widths. Options: `norm` (BatchNorm, GroupNorm, or none:
    the network before it had any) and `groups` (GroupNorm's, fewer where a width is not a
    multiple)."""
    depth = min(halvings(side), len(hidden or CONV_WIDTHS))
    if depth == 0:
        raise ValueError(f"data.side {side}: the conv network halves the side at least once and keeps it "
                         f"at {SMALLEST_MAP} or more; it takes even sides from {2 * SMALLEST_MAP} "
                         "(8, 16, 28, 32, 64, …)")
    widths = list(hidden or CONV_WIDTHS)[:depth]
    act = ACTIVATIONS[activation]
    small = side >> depth
    encoder: list[nn.Module] = [nn.Unflatten(1, (channels, side, side))]
    for n_in, n_out in zip([channels, *widths], widths):
        encoder += [nn.Conv2d(n_in, n_out, 3, stride=2, padding=1), *normalized(n_out, norm, groups), act()]
    encoder += [nn.Flatten(), nn.Linear(widths[-1] * small * small, 2 * d)]
    # the code's linear map straight into the first transposed convolution, as the common VAE has
    # it; with `norm: none`, the network as it was before it had options (its checkpoints load)
    decoder: list[nn.Module] = [nn.Linear(d, widths[-1] * small * small), *([act()] if norm == "none" else []),
                                nn.Unflatten(1, (widths[-1], small, small))]
    for n_in, n_out in zip(widths[::-1], [*widths[-2::-1], widths[0]]):
        decoder += [nn.ConvTranspose2d(n_in, n_out, 3, stride=2, padding=1, output_padding=1),
                    *normalized(n_out, norm, groups), act()]
    decoder += [nn.Conv2d(widths[0], channels, 3, padding=1), nn.Flatten()]
    return encoder, decoder, widths


ARCHITECTURES: dict[str, Callable[..., Built]] = {"mlp": mlp, "conv": conv}
# `activation: null` is the architecture's own: the notes' ReLU, the common convolutional VAE's LeakyReLU
OWN_ACTIVATION = {"conv": "leaky_relu"}


def activation_of(arch: str, activation: str | None) -> str:
    return OWN_ACTIVATION.get(arch, "relu") if activation is None else activation
# what an options-less checkpoint of an architecture was built with, before it had options
BEFORE_OPTIONS = {"conv": {"norm": "none"}}


def options_of(arch: str, given: dict | None) -> dict:
    """Every option of `arch`, `given` ones checked and the rest at their defaults; a
    ParamsError (exit 2) naming the first bad one as `arch_options.<name>`."""
    builder = ARCHITECTURES[arch]
    declared = {name: parameter for name, parameter in inspect.signature(builder).parameters.items()
                if parameter.kind is inspect.Parameter.KEYWORD_ONLY}
    given = dict(given or {})
    for name in given:
        if name not in declared:
            raise ParamsError(f"arch_options.{shown(name, quote=False)}: not an option of arch {arch}; "
                              f"its options are {', '.join(declared) or 'none'} (vaepipe/model/architectures.py)")
    hints = typing.get_type_hints(builder, include_extras=True)
    options = {}
    for name, parameter in declared.items():
        hint = hints.get(name, object)
        base, *extras = typing.get_args(hint) if typing.get_origin(hint) is Annotated else (hint,)
        spec = next((extra for extra in extras if isinstance(extra, dataclasses.Field)), dataclasses.field())
        options[name] = check_value(given.get(name, parameter.default), base, spec, f"arch_options.{name}")
    return options
