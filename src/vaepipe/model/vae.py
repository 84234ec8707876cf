"""The VAE of the notes (week 8, "Implementation of Variational Autoencoder").

The classic AE is the same network without sampling: its code h is μ.
"""

from __future__ import annotations

import pickle
import zipfile

import torch
from torch import nn

from vaepipe.model.architectures import ACTIVATIONS, ARCHITECTURES, BEFORE_OPTIONS, activation_of, options_of
from vaepipe.atomic import write_tensors
from vaepipe.errors import ParamsError, UserError, unreadable
from vaepipe.layout import PIXELS, image_shape
from vaepipe.model.loss import CONTINUOUS_BERNOULLI, decoded_mean
from vaepipe.model.network import Footprint, hidden_widths, mlp_footprint
from vaepipe.params import LIKELIHOODS, MAX_WIDTH, shown
from vaepipe.data.tensorfile import refuse_compressed


class VAE(nn.Module):
    """The notes' VAE: an encoder to μ and log σ², the reparameterisation, a decoder to the
    logits of p(x|z). Its networks come from the architecture `arch` (vaepipe.model.architectures:
    the notes' MLP, one hidden layer of d² ReLU units each side, or a convolutional one);
    `hidden` and `activation` shape them (Burda et al.'s MLP: [200, 200] tanh)."""

    def __init__(self, d: int = 20, variational: bool = True, likelihood: str = "bernoulli",
                 pixels: int = PIXELS, hidden: list[int] | None = None, activation: str | None = "relu",
                 arch: str = "mlp", arch_options: dict | None = None):
        super().__init__()
        self.d = d
        self.pixels = pixels  # channels·side², from the data: 784 for MNIST
        self.variational = variational
        self.likelihood = likelihood  # what the decoder's output parameterises: see `decode`
        self.arch = arch  # vaepipe.model.architectures: what builds the two networks
        if arch not in ARCHITECTURES:
            raise ValueError(f"arch: {shown(arch)} is not an architecture; there are {', '.join(ARCHITECTURES)}")
        self.activation = activation_of(arch, activation)  # None: the architecture's own
        self.arch_options = options_of(arch, arch_options)  # every option, defaults included
        self.channels, side = image_shape(pixels)
        encoder, decoder, self.hidden = ARCHITECTURES[arch](d, self.channels, side, hidden, self.activation,
                                                            **self.arch_options)
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder, nn.Sigmoid())

    def reparameterise(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        if self.training and self.variational:
            return self.draw_code(mu, logvar)[0]
        return mu

    @staticmethod
    def draw_code(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z = μ + ε ⊙ σ with ε ~ N(0, I), and the ε and σ it took (for the gradient)."""
        std = logvar.mul(0.5).exp()
        eps = torch.randn_like(std)
        return eps.mul(std).add(mu), eps, std

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split_code(self.encoder(x.view(-1, self.pixels)))

    def split_code(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's output [N, 2d] as (μ, log σ²), views of it."""
        mu_logvar = encoded.view(-1, 2, self.d)
        return mu_logvar[:, 0, :], mu_logvar[:, 1, :]

    @property
    def to_logits(self) -> nn.Sequential:
        """The decoder without its final Sigmoid: the loss takes logits, for stability."""
        return self.decoder[:-1]

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_logits(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z): the Sigmoid's λ, or the continuous Bernoulli's mean."""
        if self.likelihood in CONTINUOUS_BERNOULLI:
            return decoded_mean(self.decode_logits(z), self.likelihood)
        return self.decoder(z)

    def prior_codes(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """z ~ N(0, I), drawn on the generator's device, returned on the model's."""
        z = torch.randn(count, self.d, generator=generator, device=generator.device)
        return z.to(self.decoder[0].weight.device)

    @torch.no_grad()
    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Decodings of z ~ N(0, I): the notes' figure 6."""
        return self.decode(self.prior_codes(count, generator))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x̂ as logits, μ, log σ²)."""
        mu, logvar = self.encode(x)
        z = self.reparameterise(mu, logvar)
        return self.decode_logits(z), mu, logvar


def hyperparameters(model: VAE) -> dict:
    """What builds the model again; the notes' architecture is the default, left unsaid
    (so its checkpoints stay what they were)."""
    if model.arch != "mlp":
        shape = {"arch": model.arch, "pixels": model.pixels, "hidden": model.hidden, "activation": model.activation,
                 "arch_options": model.arch_options}
    elif (model.hidden, model.activation) == (hidden_widths(model.d), "relu"):
        shape = {}
    else:
        shape = {"hidden": model.hidden, "activation": model.activation}
    return {"d": model.d, "variational": model.variational, "likelihood": model.likelihood, **shape}


class ArchitectureError(UserError):
    """A checkpoint or params.yaml naming an architecture this code does not have."""

    exit_code = 2


def built(d: int, variational: bool, likelihood: str, pixels: int, hidden, activation: str, arch: str,
          device: torch.device | str = "cpu", arch_options: dict | None = None) -> VAE:
    """The model, built on `device` (PyTorch's "meta" device: its shapes, no memory), or a
    UserError (exit 2) naming the param an architecture cannot take."""
    if arch not in ARCHITECTURES:
        raise ArchitectureError(f"arch: {shown(arch)} is not an architecture of this code; "
                                  f"there are {', '.join(ARCHITECTURES)} (vaepipe/model/architectures.py)")
    try:
        with torch.device(device):
            return VAE(d, variational, likelihood, pixels, hidden, activation, arch, arch_options)
    except ValueError as error:
        raise ArchitectureError(str(error)) from None


def footprint(model: VAE) -> Footprint:
    """What the model holds, for the memory estimates: the notes' MLP from its widths (the
    formulas the estimates always used), any other from a pass on the meta device, which
    records every layer's output without computing or allocating anything."""
    if model.arch == "mlp":
        return mlp_footprint(model.d, model.pixels, model.hidden)
    meta = built(model.d, model.variational, model.likelihood, model.pixels, model.hidden, model.activation,
                 model.arch, device="meta", arch_options=model.arch_options)
    outputs = []
    hooks = [module.register_forward_hook(lambda _, __, out: outputs.append(out.numel()))
             for module in meta.modules() if not list(module.children())]
    mu, _ = meta.encode(torch.zeros(1, meta.pixels, device="meta"))
    encoding = sum(outputs)
    outputs.clear()
    meta.decoder(mu)
    decoding = sum(outputs)
    for hook in hooks:
        hook.remove()
    parameters = sum(p.numel() for p in meta.parameters())
    return Footprint(parameters, meta.pixels + encoding + 3 * meta.d + decoding + meta.pixels,
                     meta.d + decoding + meta.pixels)


def save_model(path, model: VAE, extra: dict) -> None:
    """State dict plus what built it, loadable with weights_only=True."""
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    write_tensors(path, {"state_dict": state, "hparams": {**hyperparameters(model), **extra}})


def checked_checkpoint(checkpoint) -> tuple[dict, dict, int]:
    """(hparams, state dict, pixels) of a loaded checkpoint, checked before any model is
    built: the hyper-parameters within params.yaml's limits, and every tensor of the model
    they describe present, with its shape, in a storage that holds it. So the model built
    is never larger than the file it came from; ValueError says what is wrong."""
    if not isinstance(checkpoint, dict) or not all(isinstance(checkpoint.get(key), dict)
                                                   for key in ("hparams", "state_dict")):
        raise ValueError("not a mapping of state_dict and hparams")
    hparams, state = checkpoint["hparams"], checkpoint["state_dict"]
    d, hidden = hparams.get("d"), hparams.get("hidden")
    if type(d) is not int or not 1 <= d <= MAX_WIDTH:
        raise ValueError(f"hparams d: must be an integer from 1 to {MAX_WIDTH}, got {shown(d)}")
    if hidden is not None and (not isinstance(hidden, list) or not hidden
                               or any(type(w) is not int or not 1 <= w <= MAX_WIDTH for w in hidden)):
        raise ValueError(f"hparams hidden: must be null or a list of widths from 1 to {MAX_WIDTH}, got {shown(hidden)}")
    for key, allowed in (("variational", (True, False)), ("likelihood", LIKELIHOODS),
                         ("activation", tuple(ACTIVATIONS))):
        value = hparams.get(key, "relu" if key == "activation" else None)
        if type(value) not in (bool, str) or value not in allowed:
            raise ValueError(f"hparams {key}: must be one of {', '.join(map(str, allowed))}, got {shown(value)}")
    arch = hparams.get("arch", "mlp")
    if arch not in ARCHITECTURES:
        raise ArchitectureError(f"its architecture {shown(arch)} is not one of this code's "
                                  f"({', '.join(ARCHITECTURES)}): use the code that trained it, or run "
                                  "`dvc repro train --force`")
    if arch == "mlp":  # the notes' checkpoints carry no pixels: the first layer has them
        first = state.get("encoder.0.weight")
        if not isinstance(first, torch.Tensor) or first.dim() != 2:
            raise ValueError("no encoder.0.weight of two dimensions")
        pixels = first.shape[1]
    else:
        pixels = hparams.get("pixels")
        if type(pixels) is not int or not 1 <= pixels <= MAX_WIDTH ** 2:
            raise ValueError(f"hparams pixels: must be an integer from 1 to {MAX_WIDTH ** 2}, got {shown(pixels)}")
    options = saved_options(hparams, arch)
    try:
        expected = {name: (tuple(tensor.shape), tensor.dtype) for name, tensor in built(
            d, True, hparams["likelihood"], pixels, hidden, hparams.get("activation", "relu"), arch,
            device="meta", arch_options=options).state_dict().items()}
    except ParamsError as error:
        raise ValueError(f"hparams {error}") from None
    if set(state) != set(expected):
        raise ValueError(f"its tensors are not those of the model its hparams describe ({len(state)} "
                         f"against {len(expected)})")
    for name, (shape, dtype) in expected.items():  # float32, but a BatchNorm's count of batches
        tensor = state[name]
        if (not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape or tensor.dtype != dtype
                or not tensor.is_contiguous() or tensor.untyped_storage().nbytes()
                < (tensor.storage_offset() + tensor.numel()) * tensor.element_size()):
            raise ValueError(f"{name}: not a {str(dtype).removeprefix('torch.')} tensor of shape {list(shape)} "
                             "held by its storage")
    return hparams, state, pixels


def saved_options(hparams: dict, arch: str) -> dict:
    """The architecture's options a checkpoint was built with; one saved before its
    architecture had options was built as BEFORE_OPTIONS says."""
    options = hparams.get("arch_options", BEFORE_OPTIONS.get(arch, {}))
    if not isinstance(options, dict):
        raise ValueError(f"hparams arch_options: must be a mapping, got {shown(options)}")
    return options


def load_model(path, device: torch.device | str = "cpu") -> tuple[VAE, dict]:
    """The trained model (in evaluation mode) and its hyper-parameters."""
    try:
        with zipfile.ZipFile(path) as archive:
            refuse_compressed(archive)  # before torch.load inflates anything
        hparams, state, pixels = checked_checkpoint(torch.load(path, map_location=device, weights_only=True))
        model = built(hparams["d"], hparams["variational"], hparams["likelihood"], pixels, hparams.get("hidden"),
                      hparams.get("activation", "relu"), hparams.get("arch", "mlp"), device,
                      saved_options(hparams, hparams.get("arch", "mlp")))
        model.load_state_dict(state)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, ValueError, EOFError, OSError) as error:
        raise unreadable(path, error, "train") from None
    except ArchitectureError as error:
        raise ArchitectureError(f"{path}: {error}") from None
    return model.eval(), hparams
