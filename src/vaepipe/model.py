"""The VAE of the notes (week 8, "Implementation of Variational Autoencoder").

The classic AE is the same network without sampling: its code h is μ.
"""

from __future__ import annotations

import pickle

import torch
from torch import nn

from vaepipe.atomic import write_tensors
from vaepipe.device import unreadable
from vaepipe.layout import PIXELS
from vaepipe.loss import CONTINUOUS_BERNOULLI, decoded_mean
from vaepipe.network import hidden_widths, layer_widths, parameter_shapes
from vaepipe.params import LIKELIHOODS, MAX_WIDTH, shown


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def layers(widths: list[int], activation: str) -> list[nn.Module]:
    """Linear layers through `widths`, the activation between them."""
    out = []
    for n_in, n_out in zip(widths, widths[1:]):
        out += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return out[:-1]


class VAE(nn.Module):
    """The notes' model: one hidden layer of d² ReLU units each side. `hidden` and
    `activation` make others (Burda et al.'s: [200, 200] tanh)."""

    def __init__(self, d: int = 20, variational: bool = True, likelihood: str = "bernoulli",
                 pixels: int = PIXELS, hidden: list[int] | None = None, activation: str = "relu"):
        super().__init__()
        self.d = d
        self.pixels = pixels  # side², from the data: 784 for MNIST
        self.variational = variational
        self.likelihood = likelihood  # what the decoder's output parameterises: see `decode`
        self.hidden = hidden_widths(d, hidden)
        self.activation = activation
        encoder, decoder = layer_widths(d, pixels, self.hidden)
        self.encoder = nn.Sequential(*layers(encoder, activation))
        self.decoder = nn.Sequential(*layers(decoder, activation), nn.Sigmoid())

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
    shape = {} if (model.hidden, model.activation) == (hidden_widths(model.d), "relu") else {
        "hidden": model.hidden, "activation": model.activation}
    return {"d": model.d, "variational": model.variational, "likelihood": model.likelihood, **shape}


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
    first = state.get("encoder.0.weight")
    if not isinstance(first, torch.Tensor) or first.dim() != 2:
        raise ValueError("no encoder.0.weight of two dimensions")
    pixels = first.shape[1]
    expected = parameter_shapes(d, pixels, hidden)
    if set(state) != set(expected):
        raise ValueError(f"its tensors are not those of the model its hparams describe ({len(state)} "
                         f"against {len(expected)})")
    for name, shape in expected.items():
        tensor = state[name]
        if (not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape or tensor.dtype != torch.float32
                or not tensor.is_contiguous() or tensor.untyped_storage().nbytes()
                < (tensor.storage_offset() + tensor.numel()) * tensor.element_size()):
            raise ValueError(f"{name}: not a float32 tensor of shape {list(shape)} held by its storage")
    return hparams, state, pixels


def load_model(path, device: torch.device | str = "cpu") -> tuple[VAE, dict]:
    """The trained model (in evaluation mode) and its hyper-parameters."""
    try:
        hparams, state, pixels = checked_checkpoint(torch.load(path, map_location=device, weights_only=True))
        model = VAE(hparams["d"], hparams["variational"], hparams["likelihood"], pixels,
                    hparams.get("hidden"), hparams.get("activation", "relu")).to(device)
        model.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as error:
        raise unreadable(path, error, "train") from None
    return model.eval(), hparams
