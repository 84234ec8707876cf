"""A training step's gradients without autograd's graph of the networks.

The notes' networks are chains of Linear layers and ReLU (or Tanh): backward through them is
two matrix products and a sum a layer and one elementwise product an activation. Autograd
records some 30 nodes a batch for the networks, the reparameterisation and the KL, and
walking them costs 4–9% of an epoch on a CPU (docs/performance.md). Here those gradients
are written out with the operations autograd runs, each rounded as autograd rounds it, so
every weight comes out bit for bit as autograd's (tests/test_training.py compares them).
Of the likelihoods only the notes' Bernoulli has its closed form here; the others keep
autograd, on a graph from the logits to the loss.
"""

from __future__ import annotations

import torch
from torch import nn

from vaepipe.model.loss import bce, bce_gradient, kl_per_dim, loss_terms, reconstruction, vae_loss

aten = torch.ops.aten
ACTIVATION_GRADIENTS = {  # from the activation's output, as autograd computes them
    nn.ReLU: lambda grad, out: aten.threshold_backward(grad, out, 0),
    nn.Tanh: lambda grad, out: aten.tanh_backward(grad, out),
}


def forward(layers: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's input, then the last layer's output."""
    values = [x]
    for layer in layers:
        values.append(layer(values[-1]))
    return values


def backward(layers: list[nn.Module], values: list[torch.Tensor], grad: torch.Tensor,
             input_grad: bool = True) -> torch.Tensor | None:
    """Set each Linear layer's .grad from `grad`, the gradient of the output; return the
    input's gradient (None without `input_grad`, which saves the first layer's product)."""
    for i in reversed(range(len(layers))):
        layer = layers[i]
        if isinstance(layer, nn.Linear):
            layer.weight.grad = torch.mm(grad.t(), values[i])
            layer.bias.grad = grad.sum(0)
            if i == 0 and not input_grad:
                return None
            grad = torch.mm(grad, layer.weight)
        else:
            grad = ACTIVATION_GRADIENTS[type(layer)](grad, values[i + 1])
    return grad


def reconstruction_and_gradient(logits: torch.Tensor, x: torch.Tensor, likelihood: str
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's summed −log p(x|z) and its gradient in the logits."""
    if likelihood == "bernoulli":  # the closed form autograd would run, without autograd's call
        return bce(logits, x).sum(), bce_gradient(logits, x)
    with torch.enable_grad():
        logits = logits.detach().requires_grad_()
        recon = reconstruction(logits, x, likelihood).sum()
        return recon.detach(), torch.autograd.grad(recon, logits)[0]


def written_out(model) -> bool:
    """Whether both networks are chains this module's backward knows: Linear layers and
    the activations of ACTIVATION_GRADIENTS (the notes' MLP)."""
    return all(isinstance(layer, (nn.Linear, *ACTIVATION_GRADIENTS)) for layer in [*model.encoder, *model.to_logits])


@torch.no_grad()
def loss_and_gradients(model, x: torch.Tensor, *, beta: float, likelihood: str) -> dict[str, torch.Tensor]:
    """`vae_loss` of the model (in training mode) on the batch `x`, its gradient left in
    every parameter's .grad, as `vae_loss(…)["loss"].backward()` from zeroed grads would:
    written out for the chains it knows, by autograd for any other architecture."""
    if not written_out(model):
        for parameter in model.parameters():
            parameter.grad = None
        with torch.enable_grad():
            logits, mu, logvar = model(x)
            terms = vae_loss(logits, x, mu, logvar, beta=beta, likelihood=likelihood)
            terms["loss"].backward()
        return {name: value.detach() for name, value in terms.items()}
    encoder, decoder = list(model.encoder), list(model.to_logits)
    encoded = forward(encoder, x.view(-1, model.pixels))
    mu, logvar = model.split_code(encoded[-1])
    if model.variational:
        z, eps, std = model.draw_code(mu, logvar)
    else:
        z = mu
    decoded = forward(decoder, z)
    recon, grad_logits = reconstruction_and_gradient(decoded[-1], x, likelihood)
    terms = loss_terms(recon, kl_per_dim(mu, logvar).sum(), beta)
    grad_z = backward(decoder, decoded, grad_logits)
    # β · KL: ∂/∂μ = β μ, ∂/∂log σ² = β/2 σ² − β/2; z = μ + ε σ: ∂z/∂μ = 1, ∂z/∂log σ² = ε σ / 2
    # (each product and sum in autograd's order: floating point is not associative)
    half_beta = 0.5 * beta
    grad_mu = grad_z + beta * mu
    grad_logvar = logvar.exp().mul_(half_beta).sub_(half_beta)
    if model.variational:
        grad_logvar = grad_z.mul(eps).mul_(std).mul_(0.5).add_(grad_logvar)
    backward(encoder, encoded, torch.cat([grad_mu, grad_logvar], dim=1), input_grad=False)
    return terms
