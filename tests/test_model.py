"""The model and loss of the notes, checked against the formulas written out independently."""

from __future__ import annotations

import torch

from vaepipe.model.loss import vae_loss
from vaepipe.model.vae import VAE


def batch(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 784, generator=g)


def notes_loss(x_hat, x, mu, logvar, beta=1.0):
    """The notes' loss_function, term by term: BCE summed + ½ Σ(σ² − log σ² − 1 + μ²)."""
    bce = -(x * torch.log(x_hat) + (1 - x) * torch.log(1 - x_hat)).sum()
    kld = 0.5 * torch.sum(logvar.exp() - logvar - 1 + mu.pow(2))
    return bce + beta * kld, bce, kld


def test_architecture_is_the_notes():
    model = VAE(d=20)
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(400, 784), (400,), (40, 400), (40,), (400, 20), (400,), (784, 400), (784,)]
    assert [type(m).__name__ for m in model.encoder] == ["Linear", "ReLU", "Linear"]
    assert [type(m).__name__ for m in model.decoder] == ["Linear", "ReLU", "Linear", "Sigmoid"]


def test_loss_equals_the_notes_formula():
    torch.manual_seed(0)
    model, x = VAE(d=20).double(), batch().double()
    logits, mu, logvar = model(x)
    for beta in (1.0, 2.0, 0.5):
        ours = vae_loss(logits, x, mu, logvar, beta=beta, likelihood="bernoulli")
        expected, bce, kld = notes_loss(torch.sigmoid(logits), x, mu, logvar, beta)
        torch.testing.assert_close(ours["loss"], expected, rtol=1e-5, atol=0)
        torch.testing.assert_close(ours["recon"], bce, rtol=1e-5, atol=0)
        torch.testing.assert_close(ours["kl"], kld, rtol=1e-5, atol=0)


def test_float32_loss_matches_the_notes_to_1e_5():
    torch.manual_seed(1)
    model, x = VAE(d=20), batch()
    logits, mu, logvar = model(x)
    ours = vae_loss(logits, x, mu, logvar, beta=1.0, likelihood="bernoulli")["loss"]
    expected = notes_loss(torch.sigmoid(logits), x, mu, logvar)[0]
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=0)


def test_gaussian_likelihood_is_half_squared_error():
    x, logits = batch(), torch.randn(32, 784)
    mu, logvar = torch.zeros(32, 20), torch.zeros(32, 20)
    terms = vae_loss(logits, x, mu, logvar, beta=1.0, likelihood="gaussian")
    torch.testing.assert_close(terms["recon"], 0.5 * ((x - torch.sigmoid(logits)) ** 2).sum())


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    logits, x = torch.zeros(8, 784), batch(8)
    zero = vae_loss(logits, x, torch.zeros(8, 5), torch.zeros(8, 5), beta=1.0, likelihood="bernoulli")
    assert zero["kl"].item() == 0.0
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        mu, logvar = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
        assert vae_loss(logits, x, mu, logvar, beta=1.0, likelihood="bernoulli")["kl"] > 0


def test_gradients_reach_mu_and_logvar_through_the_sample():
    model = VAE(d=6).train()
    mu = torch.zeros(4, 6, requires_grad=True)
    logvar = torch.zeros(4, 6, requires_grad=True)
    z = model.reparameterise(mu, logvar)
    (z ** 2).sum().backward()  # no KL term: any gradient on logvar came through z
    assert mu.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0


def test_training_samples_and_evaluation_returns_mu():
    torch.manual_seed(0)
    model = VAE(d=6)
    mu, logvar = torch.randn(4, 6), torch.zeros(4, 6)
    assert not torch.equal(model.train().reparameterise(mu, logvar), mu)
    assert torch.equal(model.eval().reparameterise(mu, logvar), mu)


def test_ae_never_samples_and_has_no_kl_term():
    torch.manual_seed(0)
    ae = VAE(d=6, variational=False).train()
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    assert torch.equal(ae.reparameterise(mu, logvar), mu)
    x = batch(4)
    logits, mu, logvar = ae(x)
    terms = vae_loss(logits, x, mu, logvar, beta=0.0, likelihood="bernoulli")  # trained_beta of an AE
    assert terms["kl"] > 0 and torch.equal(terms["loss"], terms["recon"])
    terms["loss"].backward()
    logvar_rows = ae.encoder[2].weight.grad[6:]  # the log σ² half of the encoder's output
    assert logvar_rows.abs().sum() == 0 and ae.encoder[2].weight.grad[:6].abs().sum() > 0


def test_binary_cross_entropy_gradient_is_the_closed_form():
    from vaepipe.model.loss import binary_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(6, 784, generator=g, dtype=torch.float64)).requires_grad_()
    x = torch.rand(6, 784, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(binary_cross_entropy, (logits, x))
    reference = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
    torch.testing.assert_close(binary_cross_entropy(logits, x), reference)


def test_other_architectures_hidden_widths_and_tanh():
    from vaepipe.model.vae import hyperparameters

    model = VAE(d=50, hidden=[200, 200], activation="tanh")
    widths = [layer.out_features for layer in model.encoder if isinstance(layer, torch.nn.Linear)]
    assert widths == [200, 200, 100] and isinstance(model.encoder[1], torch.nn.Tanh)
    assert [layer.out_features for layer in model.decoder if isinstance(layer, torch.nn.Linear)] == [200, 200, 784]
    assert hyperparameters(model)["hidden"] == [200, 200] and hyperparameters(model)["activation"] == "tanh"
    notes = VAE(d=20)
    assert "hidden" not in hyperparameters(notes)  # the notes' checkpoints are what they were
    assert list(notes.state_dict()) == ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
                                        "decoder.0.weight", "decoder.0.bias", "decoder.2.weight", "decoder.2.bias"]


def test_a_deeper_model_saves_and_loads(tmp_path):
    from vaepipe.model.vae import load_model, save_model

    torch.manual_seed(0)
    model = VAE(d=5, hidden=[30, 20], activation="tanh").eval()
    save_model(tmp_path / "m.pt", model, {"beta": 1.0, "binarize": "dynamic"})
    loaded, hparams = load_model(tmp_path / "m.pt")
    z = torch.randn(3, 5)
    assert torch.equal(loaded.decode(z), model.decode(z)) and loaded.hidden == [30, 20] and loaded.activation == "tanh"
