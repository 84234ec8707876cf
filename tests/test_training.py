"""The fast training loop computes what the straightforward one does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from support import ROOT, synthetic_digits
from vaepipe.model.device import pick_device
from vaepipe.errors import UserError
from vaepipe.model.vae import VAE
from vaepipe.training.backprop import loss_and_gradients
from vaepipe.model.loss import TERMS
from vaepipe.training.loop import batch_loss, make_optimizer, train_epoch

sys.path.insert(0, str(ROOT / "benchmarks"))
from train_speed import ReferenceVAE  # noqa: E402  the notes' model as examples write it


def digits(n=3000):
    images, _ = synthetic_digits(n, seed=0)
    return torch.from_numpy(images.reshape(n, 784)).float() / 255


def straightforward_epoch(model, optimizer, x, batch_size, generator):
    """The notes' loop: sigmoid outputs, binary_cross_entropy, per-batch .item()."""
    model.train()
    total = 0.0
    order = torch.randperm(len(x), generator=generator)
    for start in range(0, len(x), batch_size):
        batch = x[order[start:start + batch_size]]
        x_hat, mu, logvar = model(batch)
        bce = F.binary_cross_entropy(x_hat, batch, reduction="sum")
        kld = 0.5 * torch.sum(logvar.exp() - logvar - 1 + mu.pow(2))
        optimizer.zero_grad()
        (bce + kld).backward()
        optimizer.step()
        total += (bce + kld).item()
    return total / len(x)


def test_fast_loop_matches_the_straightforward_loop_epoch_by_epoch():
    x = digits()
    torch.manual_seed(0)
    fast = VAE(d=20)
    reference = ReferenceVAE()
    reference.load_state_dict(fast.state_dict())  # same weights, same parameter names
    fast_optimizer = make_optimizer(fast, 1e-3)
    reference_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)
    fast_order, reference_order = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for epoch in range(1, 4):
        torch.manual_seed(100 + epoch)  # the same ε for both
        fast_loss = train_epoch(fast, fast_optimizer, x, epoch=epoch, batch_size=128, beta=1.0,
                                likelihood="bernoulli", generator=fast_order, progress=False)["loss"]
        torch.manual_seed(100 + epoch)
        reference_loss = straightforward_epoch(reference, reference_optimizer, x, 128, reference_order)
        assert abs(fast_loss - reference_loss) <= 1e-4 * reference_loss, (epoch, fast_loss, reference_loss)


@pytest.mark.parametrize("config", [
    {},  # the notes' model
    {"hidden": [200, 200], "activation": "tanh", "likelihood": "continuous-bernoulli", "beta": 3.0},
    {"likelihood": "discretized", "beta": 0.3},
    {"likelihood": "gaussian", "d": 2},
    {"variational": False, "beta": 0.0},  # the classic AE
])
def test_gradients_by_hand_are_autograds_bit_for_bit(config):
    """Two epochs of the train stage's loop against the same loop stepping `vae_loss`'s
    autograd: every loss term of every batch and every weight after them, to the last bit."""
    config = {"d": 20, "variational": True, "likelihood": "bernoulli", "hidden": None, "activation": "relu",
              "beta": 1.0} | config
    beta = config.pop("beta")
    x = digits(1000)
    torch.manual_seed(0)
    ours = VAE(pixels=784, **config)
    theirs = VAE(pixels=784, **config)
    theirs.load_state_dict(ours.state_dict())
    steps = {}
    for model in (ours, theirs):
        optimizer, generator = make_optimizer(model, 1e-3), torch.Generator().manual_seed(1)
        torch.manual_seed(2)  # the same ε for both
        model.train()
        steps[model] = []
        for _ in range(2):
            for part in torch.randperm(len(x), generator=generator).split(128):
                if model is ours:
                    terms = loss_and_gradients(model, x[part], beta=beta, likelihood=config["likelihood"])
                else:
                    terms = batch_loss(model, x[part], beta=beta, likelihood=config["likelihood"])
                    optimizer.zero_grad()
                    terms["loss"].backward()
                steps[model].append([terms[name].item() for name in TERMS])
                optimizer.step()
    assert steps[ours] == steps[theirs]
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.equal(a, b), name


def test_fused_adam_steps_exactly_as_torch_optims_fused_adam_without_importing_dynamo():
    torch.manual_seed(0)
    ours, theirs = VAE(d=20), VAE(d=20)
    theirs.load_state_dict(ours.state_dict())
    optimizers = {ours: make_optimizer(ours, 1e-3),
                  theirs: torch.optim.Adam(theirs.parameters(), lr=1e-3, fused=True)}
    x = digits(1000)
    for model, optimizer in optimizers.items():
        torch.manual_seed(5)  # the same ε for both
        for epoch in (1, 2):
            train_epoch(model, optimizer, x, epoch=epoch, batch_size=128, beta=1.0, likelihood="bernoulli",
                        generator=torch.Generator().manual_seed(epoch), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))

    # in a fresh process: a training step of either kernel imports no torch._dynamo (torch.optim would)
    code = ("import sys, torch\n"
            "from vaepipe.model.vae import VAE\n"
            "from vaepipe.model.optim import Adam\n"
            "for fused in (True, False):\n"
            "    model = VAE(4)\n"
            "    optimizer = Adam(model.parameters(), 1e-3, fused=fused)\n"
            "    model(torch.rand(8, 784))[0].sum().backward()\n"
            "    optimizer.step()\n"
            "    optimizer.zero_grad()\n"
            "print('torch._dynamo' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert result.stdout.strip() == "False", result.stderr


def test_the_scoring_cnns_adam_and_cosine_steps_exactly_as_torch_optims():
    """Adam(fused=False) with cosine_rates gives the bits of torch.optim.Adam() stepped by
    CosineAnnealingLR, which made the scoring CNN's weights (and so every FD)."""
    from vaepipe.evaluation.classifier import Classifier
    from vaepipe.model.optim import Adam, cosine_rates

    images, labels = synthetic_digits(640, seed=1)
    x, y = torch.from_numpy(images).float().div(255).view(-1, 784), torch.from_numpy(labels).long()
    torch.manual_seed(0)
    ours, theirs = Classifier(), Classifier()
    theirs.load_state_dict(ours.state_dict())
    steps = 20
    reference = torch.optim.Adam(theirs.parameters(), lr=0.004)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=steps)
    optimizer, rates = Adam(ours.parameters(), lr=0.004, fused=False), cosine_rates(0.004, steps)
    for step in range(steps):
        assert rates[step] == reference.param_groups[0]["lr"]  # to the last bit
        batch = slice(32 * step, 32 * step + 32)
        F.cross_entropy(theirs(x[batch]), y[batch]).backward()
        reference.step()
        reference.zero_grad()
        schedule.step()
        F.cross_entropy(ours(x[batch]), y[batch]).backward()
        optimizer.lr = rates[step]
        optimizer.step()
        optimizer.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))


def test_live_curves_grow_every_epoch_and_end_as_one_final_write(tmp_path):
    import dataclasses
    import json

    from vaepipe.atomic import write_csv, write_json
    from vaepipe.params import load_params
    from vaepipe.training.loop import LiveCurves, fit

    x = digits(400)
    params = load_params(ROOT / "params.yaml")
    params = dataclasses.replace(params, d=3, epochs=3, train=dataclasses.replace(
        params.train, batch_size=100, device="cpu"))
    live = LiveCurves(tmp_path / "plots/training.csv", tmp_path / "metrics/train.json")
    seen = []

    def watch(history, model):
        live(history, model)
        seen.append(((tmp_path / "plots/training.csv").read_text(),
                     json.loads((tmp_path / "metrics/train.json").read_text())))

    _, history = fit(params, x, x[:100], progress=False, on_epoch=watch)
    assert [len(text.splitlines()) - 1 for text, _ in seen] == [1, 2, 3, 4]  # a row per epoch, 0 to 3
    assert [metrics["train"]["loss"] for _, metrics in seen] == [row["train_loss"] for row in history.rows]
    write_csv(tmp_path / "once.csv", history.rows)  # what writing once at the end gives
    write_json(tmp_path / "once.json", {"train": history.last_train})
    assert (tmp_path / "plots/training.csv").read_bytes() == (tmp_path / "once.csv").read_bytes()
    assert (tmp_path / "metrics/train.json").read_bytes() == (tmp_path / "once.json").read_bytes()
    live.discard()  # a run that stops part-way leaves no curves behind
    assert not (tmp_path / "plots").exists() and not (tmp_path / "metrics").exists()


def test_burda_schedule_steps_the_rate_after_3_to_the_i_passes():
    from vaepipe.training.loop import lr_at

    expected = {1: 0, 2: 1, 4: 1, 5: 2, 13: 2, 14: 3, 40: 3, 41: 4, 121: 4, 122: 5, 364: 5, 365: 6, 1093: 6,
                1094: 7, 3280: 7, 5000: 7}
    for epoch, stage in expected.items():
        assert lr_at(epoch, 1e-3, "burda") == pytest.approx(1e-3 * 10 ** (-stage / 7)), epoch
    assert lr_at(77, 1e-3, "constant") == 1e-3
    assert sum(3 ** i for i in range(8)) == 3280  # their 3280 passes


def test_a_gpu_is_chosen_with_deterministic_convolutions_and_a_missing_one_is_named(monkeypatch):
    """On one GPU two runs gave two scoring CNNs (cuDNN's convolution gradients may add in
    any order) until choosing CUDA made cuDNN deterministic."""
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="^train.device: cuda was asked for but no CUDA GPU is visible"):
            pick_device("cuda")
        assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the choice alone: no GPU work follows
    assert pick_device("auto") == torch.device("cuda")
    assert torch.backends.cudnn.deterministic


def test_a_split_read_a_batch_at_a_time_trains_the_same_bits_as_one_held_whole(tmp_path):
    """StoredImages (a split over RESIDENT_BYTES, read by rows from its file) answers the
    loop's indexing with the rows themselves, and an epoch and its scoring over it take
    exactly the bits of the same split held in memory."""
    from vaepipe.data.splits import StoredImages, load_split, unit
    from vaepipe.evaluation.metrics import score
    from vaepipe.data.tensorfile import write_arrays

    images, labels = synthetic_digits(700, seed=3)
    path = tmp_path / "train.pt"
    write_arrays(path, {"images": images.reshape(700, 784), "labels": labels.astype("int64")})
    held, stored = load_split(path)[0], StoredImages(path)
    rows = torch.tensor([5, 699, 0, 5, 321])
    assert torch.equal(stored.index_select(0, rows), held.index_select(0, rows))
    assert torch.equal(stored[640:710], held[640:710]) and torch.equal(stored[3:3], held[3:3])
    assert len(stored) == 700 and not stored.is_floating_point()
    states = []
    for x in (held, stored):
        torch.manual_seed(0)
        model = VAE(d=8)
        optimizer = make_optimizer(model, 1e-3)
        terms = train_epoch(model, optimizer, x, epoch=1, batch_size=64, beta=1.0, likelihood="bernoulli",
                            generator=torch.Generator().manual_seed(1), progress=False)
        states.append((terms, score(model, x, beta=1.0, likelihood="bernoulli")[0], model.state_dict()))
    (terms_a, scored_a, state_a), (terms_b, scored_b, state_b) = states
    assert terms_a == terms_b and scored_a == scored_b
    assert all(torch.equal(state_a[name], state_b[name]) for name in state_a)
    assert torch.equal(unit(held[:2]), torch.from_numpy(images[:2].reshape(2, 784)).float() / 255)
