"""Training: seeded, in-memory, batched by index, one host sync per progress update."""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vaepipe.atomic import write_csv, write_json
from vaepipe.fingerprint import differences as machine_differences
from vaepipe.training.backprop import loss_and_gradients
from vaepipe.training.checkpoint import Checkpoints
from vaepipe.data.splits import RESIDENT_BYTES, as_modelled, binarize, unit
from vaepipe.model.device import pick_device
from vaepipe.errors import UserError
from vaepipe.model.loss import TERMS, vae_loss
from vaepipe.evaluation.metrics import images_per_pass, score
from vaepipe.model.vae import VAE
from vaepipe.model.network import Footprint
from vaepipe.model.optim import Adam
from vaepipe.resources import BYTE, FLOAT
from vaepipe.training.snapshots import kept_epochs

PROGRESS_UPDATES = 10  # running-loss refreshes per epoch: each one is a host sync on a GPU


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def make_optimizer(model: torch.nn.Module, lr: float, eps: float = 1e-8) -> Adam:
    return Adam(model.parameters(), lr, eps=eps, fused=True)


ROW_BYTES = 1024  # one epoch's row of the history: a dict of about ten floats, generously
BURDA_STAGES = 8  # i = 0…7: 3^i passes at lr · 10^(−i/7), 3280 passes in all


def lr_at(epoch: int, lr: float, schedule: str) -> float:
    """The learning rate of epoch `epoch` (1, 2, …): `lr`, or Burda et al.'s steps (their
    i-th stage of 3^i passes at lr · 10^(−i/7); passes past the last stage keep its rate)."""
    if schedule == "constant":
        return lr
    stage, end = 0, 1
    while epoch > end and stage < BURDA_STAGES - 1:
        stage += 1
        end += 3 ** stage
    return lr * 10 ** (-stage / 7)


@dataclass
class History:
    """One row per epoch (row 0: the untrained model), the test-set codes at each epoch in
    `keep` (every epoch when None), and the last epoch's training terms."""

    rows: list[dict] = field(default_factory=list)
    codes: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    last_train: dict[str, float] = field(default_factory=dict)
    keep: set[int] | None = None
    resumed_across: dict | None = None  # {"epoch", "machine"} of a checkpoint another machine kind made

    def record(self, epoch: int, beta: float, train_terms: dict, test_terms: dict, mu, logvar) -> None:
        splits = {"train": train_terms, "test": test_terms}
        self.rows.append({"epoch": epoch, "beta": beta} | {
            f"{split}_{name}": value for split, terms in splits.items() for name, value in terms.items()})
        if self.keep is None or epoch in self.keep:
            self.codes[epoch] = (mu.cpu(), logvar.cpu())
        self.last_train = train_terms
        print(f"epoch {epoch:3d}: " + "; ".join(
            f"{split} " + ", ".join(f"{name} {value:.2f}" for name, value in terms.items())
            for split, terms in splits.items()) + " (per image)", file=sys.stderr)


class LiveCurves:
    """The per-epoch CSV and the last epoch's train metrics, rewritten (atomically) after
    every epoch so that `dvc exp show` and `dvc plots` follow a run; `discard` removes them
    when the run stops part-way, so no half-run's curves outlive it."""

    def __init__(self, csv_path: Path, json_path: Path):
        self.files = (Path(csv_path), Path(json_path))
        self.written = False

    def __call__(self, history: History, model=None) -> None:
        write_csv(self.files[0], history.rows)
        self.written = True  # from here on the previous run's curves are gone
        write_json(self.files[1], {"train": history.last_train})

    def discard(self) -> None:
        if self.written:
            for path in self.files:
                path.unlink(missing_ok=True)
                if not any(path.parent.iterdir()):
                    path.parent.rmdir()


def batch_loss(model: VAE, batch: torch.Tensor, *, beta: float, likelihood: str) -> dict:
    logits, mu, logvar = model(batch)
    return vae_loss(logits, batch, mu, logvar, beta=beta, likelihood=likelihood)


def train_epoch(model: VAE, optimizer, x: torch.Tensor, *, epoch: int, batch_size: int,
                beta: float, likelihood: str, generator: torch.Generator,
                pixels: torch.Generator | None = None, progress: bool = True) -> dict[str, float]:
    """One pass over `x` in a seeded random order; returns the mean terms per image.
    With a `pixels` generator every batch is binarized anew (dynamic binarization)."""
    model.train()
    order = torch.randperm(len(x), generator=generator).to(x.device)
    starts = range(0, len(x), batch_size)
    batch_terms = torch.zeros(len(starts), len(TERMS), device=x.device)
    refresh = max(1, len(starts) // PROGRESS_UPDATES)
    with tqdm(total=len(starts), desc=f"epoch {epoch}", unit="batch", leave=False,
              disable=None if progress else True, file=sys.stderr) as bar:
        for i, start in enumerate(starts):
            batch = unit(x.index_select(0, order[start:start + batch_size]))  # twice x[…]'s speed
            if pixels is not None:
                batch = binarize(batch, pixels)
            terms = loss_and_gradients(model, batch, beta=beta, likelihood=likelihood)
            optimizer.step()
            batch_terms[i] = torch.stack([terms[name] for name in TERMS])
            if not bar.disable and ((i + 1) % refresh == 0 or i + 1 == len(starts)):
                seen = min(len(x), start + batch_size)
                bar.set_postfix(loss=f"{batch_terms[: i + 1, 0].sum().item() / seen:.2f}")
                bar.update(i + 1 - bar.n)
    check_finite(batch_terms[:, 0], epoch)
    return dict(zip(TERMS, (batch_terms.sum(dim=0) / len(x)).tolist()))


def check_finite(losses: torch.Tensor, epoch: int) -> None:
    """Stop at the first NaN or infinite batch loss, naming where it happened."""
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        batch = bad[0, 0].item()
        raise UserError(f"the loss became {losses[batch].item()} at epoch {epoch}, batch "
                        f"{batch + 1} of {len(losses)}; no model was written: lower train.lr")


@torch.no_grad()
def untrained_terms(model: VAE, x: torch.Tensor, *, beta: float, likelihood: str,
                    batch_size: int, pixels: torch.Generator | None = None) -> dict[str, float]:
    """Epoch 0's training objective: the sampled loss of the untrained model, no update."""
    model.train()
    totals = torch.zeros(len(TERMS), device=x.device)
    for start in range(0, len(x), batch_size):
        batch = unit(x[start:start + batch_size])
        if pixels is not None:
            batch = binarize(batch, pixels)
        terms = batch_loss(model, batch, beta=beta, likelihood=likelihood)
        totals += torch.stack([terms[name] for name in TERMS])
    return dict(zip(TERMS, (totals / len(x)).tolist()))


def beta_at(epoch: int, beta: float, warmup_epochs: int) -> float:
    """β of epoch `epoch` under a linear KL warm-up: 0 for epochs 0 and 1, rising by
    β/warmup_epochs an epoch, β from epoch warmup_epochs + 1 on (no warm-up: β throughout)."""
    if warmup_epochs == 0:
        return beta
    return beta * min(1.0, max(epoch - 1, 0) / warmup_epochs)


@dataclass
class Run:
    """Everything a training run carries from one epoch to the next: with `state()` saved
    after an epoch and `restore()`d, the epochs that follow take the same bits."""

    model: VAE
    optimizer: Adam
    order: torch.Generator  # each epoch's shuffle
    pixels: torch.Generator | None  # dynamic binarization's draws
    history: History

    def state(self) -> dict:
        optimizer = self.optimizer
        python, numpy = random.getstate(), np.random.get_state()
        return {"model": {name: tensor.detach().cpu() for name, tensor in self.model.state_dict().items()},
                "adam": {"exp_avgs": [m.cpu() for m in optimizer.exp_avgs],
                         "exp_avg_sqs": [v.cpu() for v in optimizer.exp_avg_sqs],
                         "step": optimizer.step_count.cpu()},
                "rng": {"python": python, "numpy": [torch.from_numpy(numpy[1].astype(np.int64)), *numpy[2:]],
                        "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
                        "order": self.order.get_state(),
                        "pixels": None if self.pixels is None else self.pixels.get_state()},
                "history": {"rows": self.history.rows, "codes": self.history.codes,
                            "last_train": self.history.last_train}}

    def restore(self, state: dict, epoch: int, epochs: int, n_test: int) -> None:
        """Put the state saved after `epoch` back; ValueError (before anything changed) when
        any part of it is not what this run of `epochs` epochs would have saved there."""
        check_state(state, self, epoch, epochs, n_test)
        saved = state["model"]
        adam, rng, history = state["adam"], state["rng"], state["history"]
        moments = [*adam["exp_avgs"], *adam["exp_avg_sqs"]]
        self.model.load_state_dict(saved)
        for mine, theirs in zip(self.optimizer.exp_avgs + self.optimizer.exp_avg_sqs, moments):
            mine.copy_(theirs)
        self.optimizer.step_count.copy_(adam["step"])
        random.setstate(rng["python"])
        keys, *rest = rng["numpy"]
        np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), *rest))
        torch.set_rng_state(rng["torch"])
        if rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.order.set_state(rng["order"])
        if self.pixels is not None:
            self.pixels.set_state(rng["pixels"])
        self.history.rows, self.history.last_train = history["rows"], history["last_train"]
        self.history.codes = history["codes"]


def check_state(state, run: Run, epoch: int, epochs: int, n_test: int) -> None:
    """ValueError unless `state` has exactly the parts, types, shapes and finite values that
    `run.state()` gives after `epoch` of `epochs`: a checkpoint is signed, and checked too."""
    def need(condition, what: str) -> None:
        if not condition:
            raise ValueError(f"its {what} is not what this run saves")

    def tensors(value, shapes, what: str, dtype=None) -> None:  # dtype: one for all, or a list, one a tensor
        need(isinstance(value, list) and len(value) == len(shapes), what)
        dtypes = dtype if isinstance(dtype, list) else [dtype] * len(shapes)
        for tensor, shape, kind in zip(value, shapes, dtypes):
            need(isinstance(tensor, torch.Tensor) and tensor.shape == shape and (kind is None or tensor.dtype == kind)
                 and (not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())), what)

    need(isinstance(state, dict) and state.keys() == {"model", "adam", "rng", "history"}, "layout")
    need(0 < epoch < epochs, "epoch")
    model = run.model.state_dict()
    need(isinstance(state["model"], dict) and state["model"].keys() == model.keys(), "model")
    # float32 weights, and a BatchNorm's running statistics (its count of batches: int64)
    tensors([state["model"][k] for k in model], [t.shape for t in model.values()], "model",
            [t.dtype for t in model.values()])
    adam, shapes = state["adam"], [p.shape for p in run.optimizer.params]
    need(isinstance(adam, dict) and adam.keys() == {"exp_avgs", "exp_avg_sqs", "step"}, "optimizer")
    tensors(adam["exp_avgs"], shapes, "optimizer", torch.float32)
    tensors(adam["exp_avg_sqs"], shapes, "optimizer", torch.float32)
    need(all(bool((v >= 0).all()) for v in adam["exp_avg_sqs"]), "optimizer")
    tensors([adam["step"]], [torch.Size([])], "optimizer step")
    rng = state["rng"]
    need(isinstance(rng, dict) and rng.keys() == {"python", "numpy", "torch", "cuda", "order", "pixels"},
         "random state")
    try:
        random.Random().setstate(rng["python"])
        keys, *rest = rng["numpy"]
        np.random.RandomState().set_state(("MT19937", keys.numpy().astype(np.uint32), *rest))
    except (TypeError, ValueError, AttributeError) as error:
        raise ValueError("its random state is not what this run saves") from error
    tensors([rng["torch"], rng["order"]], [torch.get_rng_state().shape, run.order.get_state().shape],
            "random state", torch.uint8)
    pixels = rng["pixels"]
    need(pixels is None if run.pixels is None else (
        isinstance(pixels, torch.Tensor) and pixels.shape == run.pixels.get_state().shape), "random state")
    need(isinstance(rng["cuda"], list) and all(isinstance(t, torch.Tensor) for t in rng["cuda"]), "random state")
    history = state["history"]
    need(isinstance(history, dict) and history.keys() == {"rows", "codes", "last_train"}, "history")
    columns = ["epoch", "beta", *(f"{split}_{name}" for split in ("train", "test") for name in TERMS)]
    rows = history["rows"]
    need(isinstance(rows, list) and len(rows) == epoch + 1 and all(
        isinstance(row, dict) and list(row) == columns and row["epoch"] == number and all(
            type(row[key]) is float and math.isfinite(row[key]) for key in columns[1:])
        for number, row in enumerate(rows)), "history")
    need(isinstance(history["last_train"], dict) and list(history["last_train"]) == list(TERMS), "history")
    codes, keep = history["codes"], run.history.keep
    need(isinstance(codes, dict) and set(codes) == {e for e in range(epoch + 1) if keep is None or e in keep}, "codes")
    d = run.model.d
    for pair in codes.values():
        need(isinstance(pair, tuple) and len(pair) == 2, "codes")
        tensors(list(pair), [torch.Size([n_test, d])] * 2, "codes", torch.float32)


def start_run(params, pixels: int, device: torch.device) -> Run:
    """A run at epoch 0: everything seeded from params.seed."""
    seed_everything(params.seed)
    model = VAE(params.d, params.variational, params.train.likelihood, pixels, params.hidden,
                params.activation, params.arch, params.arch_options).to(device)
    return Run(model, make_optimizer(model, params.train.lr, params.train.adam_eps),
               torch.Generator().manual_seed(params.seed),
               torch.Generator(device).manual_seed(params.seed) if params.data.binarize == "dynamic" else None,
               History(keep=kept_epochs(params.epochs)))


def resume(params, pixels: int, n_test: int, device: torch.device, checkpoints: Checkpoints) -> tuple[Run, int]:
    """The run as its checkpoint left it and the first epoch still to train; a fresh run
    (epoch 0) when there is none or it does not fit (then set aside)."""
    run = start_run(params, pixels, device)
    saved = checkpoints.load()
    if saved is None:
        return run, 0
    epoch, state, made_on = saved
    differences = machine_differences(checkpoints.machine, made_on)
    if differences and not params.train.resume_across_machines:
        print(f"warning: the checkpoint of epoch {epoch} ({checkpoints.path}) was made on another kind of machine "
              f"({'; '.join(differences)}), whose bits differ: not resumed, training starts from epoch 0 "
              "(train.resume_across_machines: true resumes it anyway)", file=sys.stderr)
        return run, 0
    try:
        run.restore(state, epoch, params.epochs, n_test)
    except (ValueError, KeyError, TypeError, RuntimeError, AttributeError, IndexError) as error:
        checkpoints.set_aside(error)
        return start_run(params, pixels, device), 0
    if differences:
        run.history.resumed_across = {"epoch": epoch, "machine": made_on}
        print(f"warning: resuming the checkpoint of epoch {epoch}, made on another kind of machine "
              f"({'; '.join(differences)}): this run's bits are neither machine's; metrics/machine.json says so",
              file=sys.stderr)
    print(f"resuming from the checkpoint of epoch {epoch} ({checkpoints.path})", file=sys.stderr)
    return run, epoch + 1


def fit(params, train_x: torch.Tensor, test_x: torch.Tensor, *, progress: bool = True,
        on_epoch: Callable[[History, VAE], None] | None = None,
        checkpoints: Checkpoints | None = None) -> tuple[VAE, History]:
    """Train the model `params` describe; the history holds every epoch, 0 to the last.
    `on_epoch(history, model)` runs after each epoch is recorded (live curves, bounds).
    With `checkpoints`, a stopped run resumes where its last checkpoint left it."""
    device = pick_device(params.train.device)
    if checkpoints is None:
        run, first = start_run(params, train_x.shape[1], device), 0
    else:
        run, first = resume(params, train_x.shape[1], len(test_x), device, checkpoints)
        if first > 0 and on_epoch is not None:
            on_epoch(run.history, run.model)
    model, optimizer, history = run.model, run.optimizer, run.history
    binarized = params.data.binarize
    train_x = as_modelled(train_x.to(device), "train", binarized)
    test_x = as_modelled(test_x.to(device), "test", binarized)
    for epoch in range(first, params.epochs + 1):
        beta = beta_at(epoch, params.trained_beta, params.train.warmup_epochs)
        options = {"beta": beta, "likelihood": params.train.likelihood, "pixels": run.pixels}
        if epoch == 0:
            train_terms = untrained_terms(model, train_x, batch_size=params.train.batch_size, **options)
        else:
            optimizer.lr = lr_at(epoch, params.train.lr, params.train.schedule)
            train_terms = train_epoch(model, optimizer, train_x, epoch=epoch,
                                      batch_size=params.train.batch_size, generator=run.order,
                                      progress=progress, **options)
        # the test loss keeps the target β, so its curve measures one objective throughout
        test_terms, mu, logvar = score(model, test_x, beta=params.trained_beta,
                                       likelihood=params.train.likelihood)
        history.record(epoch, beta, train_terms, test_terms, mu, logvar)
        if on_epoch is not None:
            on_epoch(history, model)
        if checkpoints is not None and checkpoints.due(epoch) and epoch < params.epochs:
            checkpoints.save(epoch, run.state())
    return model, history


def training_needs(network: Footprint, d: int, batch_size: int, epochs: int, n_train: int, n_test: int,
                   pixels: int) -> dict[str, float]:
    """Train: the data held whole (a byte a pixel; a split over RESIDENT_BYTES is read a
    batch at a time); the model with its gradient and Adam's two moments; one batch's
    values forward and backward; the test set scored in chunks; the test codes of the
    epochs kept, and every epoch's row of the history (a Python dict, about ROW_BYTES)."""
    per_image = 2 * network.forward  # forward + gradients
    return {"data.dataset": sum(n * pixels * BYTE for n in (n_train, n_test) if n * pixels * BYTE <= RESIDENT_BYTES),
            "d": 4 * network.parameters * FLOAT + min(n_test, images_per_pass(network)) * per_image * FLOAT,
            "train.batch_size": min(batch_size, n_train) * (per_image + pixels) * FLOAT,
            "epochs": len(kept_epochs(epochs)) * n_test * 2 * d * FLOAT + (epochs + 1) * ROW_BYTES}
