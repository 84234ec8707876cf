"""Training that survives being stopped (vaepipe.checkpoint): the train stage killed at
several points, then run again, resumes from its last checkpoint and ends with outputs
byte-identical to a run never stopped; a checkpoint of other params, other code or
damaged is never used."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import Mirror, make_repo, set_params, write_dataset

EPOCHS, STEPS_PER_EPOCH = 4, 32  # 2000 training images in batches of 64
OUTPUTS = ("models/model.pt", "models/snapshots", "metrics/train.json", "plots/training.csv")

# Runs the project's own train stage in a process that stops itself: with a signal's name,
# that signal sent at the given Adam step (in the middle of an epoch); with "write", SIGKILL
# halfway through writing the checkpoint of the given epoch, the bytes so far on disk.
STOPPING = """
import io, os, runpy, signal, sys
import torch
from vaepipe import optim
how, at = sys.argv[1], int(sys.argv[2])
if how == "write":
    save = torch.save
    def half_then_killed(obj, stream, *args, **kwargs):
        if isinstance(obj, dict) and "state" in obj and obj.get("epoch") == at:
            whole = io.BytesIO()
            save(obj, whole)
            stream.write(whole.getvalue()[: len(whole.getvalue()) // 2])
            stream.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return save(obj, stream, *args, **kwargs)
    torch.save = half_then_killed
else:
    step, count = optim.Adam.step, [0]
    def counted(self):
        count[0] += 1
        if count[0] == at:
            os.kill(os.getpid(), getattr(signal, how))
        return step(self)
    optim.Adam.step = counted
sys.argv = ["stages/train.py"]
runpy.run_path("stages/train.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A project copy whose data is downloaded and normalized: only train is left to run."""
    data = write_dataset(tmp_path_factory.mktemp("data"), train=2000, test=500)
    mirror = Mirror(data)
    try:
        repo = make_repo(tmp_path_factory.mktemp("prepared"), mirror.url, epochs=EPOCHS)
        for stage in ("download", "normalize"):
            subprocess.run([sys.executable, f"stages/{stage}.py"], cwd=repo, env=env_for(repo, repo / "unused"),
                           check=True, capture_output=True)
    finally:
        mirror.close()
    return repo


def env_for(repo: Path, store: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(repo / "src"), VAEPIPE_CHECKPOINTS=str(store))
    env.pop("PYTHONHASHSEED", None)
    return env


def copy(prepared: Path, folder: Path) -> Path:
    shutil.copytree(prepared, folder, symlinks=True)
    return folder


def train(repo: Path, store: Path, stop: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "stages/train.py"] if stop is None else [sys.executable, "-c", STOPPING, *map(str, stop)]
    return subprocess.run(command, cwd=repo, env=env_for(repo, store), capture_output=True, text=True, timeout=600)


def outputs(repo: Path) -> dict[str, bytes]:
    found = {}
    for name in OUTPUTS:
        path = repo / name
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            found[str(file.relative_to(repo))] = file.read_bytes()
    return found


@pytest.fixture(scope="module")
def never_stopped(prepared, tmp_path_factory) -> dict[str, bytes]:
    repo = copy(prepared, tmp_path_factory.mktemp("reference") / "repo")
    store = tmp_path_factory.mktemp("reference-store")
    result = train(repo, store)
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stderr
    assert not list(store.iterdir()), "a finished run leaves no checkpoint"
    return outputs(repo)


def checkpoint_files(store: Path) -> list[Path]:
    return sorted(store.glob("train-*.pt"))


@pytest.mark.parametrize("how, at, resumed_from", [
    ("SIGKILL", 2 * STEPS_PER_EPOCH + 10, 2),  # in epoch 3, after the checkpoint of epoch 2
    ("SIGTERM", 3 * STEPS_PER_EPOCH + 5, 3),
    ("SIGINT", STEPS_PER_EPOCH + 20, 1),
    ("write", 2, 1),  # SIGKILL halfway through writing epoch 2's checkpoint: epoch 1's is used
])
def test_a_stopped_run_resumes_and_ends_byte_identical(prepared, never_stopped, tmp_path, how, at, resumed_from):
    repo, store = copy(prepared, tmp_path / "repo"), tmp_path / "store"
    stopped = train(repo, store, (how, at))
    assert stopped.returncode == (-signal.SIGKILL if how in ("SIGKILL", "write") else 130), stopped.stderr
    if how in ("SIGTERM", "SIGINT"):
        assert stopped.stderr.strip().splitlines()[-1] == (
            f"error: stopped by {how}: nothing was written but the checkpoint of epoch {resumed_from}; "
            "run `dvc repro` to resume from it")
    assert len(checkpoint_files(store)) == 1
    assert not (repo / "models" / "model.pt").exists()
    if how == "write":
        assert len(list(store.glob(".train-*.tmp"))) == 1, "the write stopped midway leaves its temporary file"

    resumed = train(repo, store)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from the checkpoint of epoch {resumed_from} " in resumed.stderr
    assert f"epoch {resumed_from:3d}:" not in resumed.stderr  # the epochs it had are not trained again
    assert f"epoch {resumed_from + 1:3d}:" in resumed.stderr
    assert outputs(repo) == never_stopped
    assert not list(store.iterdir()), "the finished run removed its checkpoint and every leftover"


def test_how_often_it_saves_is_not_part_of_the_key(prepared, never_stopped, tmp_path):
    repo, store = copy(prepared, tmp_path / "repo"), tmp_path / "store"
    assert train(repo, store, ("SIGKILL", 2 * STEPS_PER_EPOCH + 3)).returncode == -signal.SIGKILL
    set_params(repo, train__checkpoint_every=3)
    resumed = train(repo, store)
    assert "resuming from the checkpoint of epoch 2 " in resumed.stderr
    assert outputs(repo) == never_stopped


@pytest.mark.parametrize("change", ["beta", "code"])
def test_a_checkpoint_of_other_params_or_code_is_never_used(prepared, tmp_path, change):
    repo, store = copy(prepared, tmp_path / "repo"), tmp_path / "store"
    assert train(repo, store, ("SIGKILL", 2 * STEPS_PER_EPOCH + 3)).returncode == -signal.SIGKILL
    (theirs,) = checkpoint_files(store)
    before = theirs.read_bytes()
    if change == "beta":
        set_params(repo, beta=2)
    else:  # one comment added to a module train runs
        loss = repo / "src" / "vaepipe" / "loss.py"
        loss.write_text(loss.read_text() + "# a change\n")
    fresh = train(repo, store)
    assert fresh.returncode == 0, fresh.stderr
    assert "resuming" not in fresh.stderr
    assert "epoch   1:" in fresh.stderr
    # the other run's checkpoint is left as it was, for that run; this run's is removed
    assert checkpoint_files(store) == [theirs] and theirs.read_bytes() == before
    if change == "beta":
        assert (repo / "plots" / "training.csv").read_text().splitlines()[-1].split(",")[1] == "2.0"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign"])
def test_a_damaged_checkpoint_is_set_aside_and_training_starts_over(prepared, never_stopped, tmp_path, damage):
    repo, store = copy(prepared, tmp_path / "repo"), tmp_path / "store"
    assert train(repo, store, ("SIGKILL", 2 * STEPS_PER_EPOCH + 3)).returncode == -signal.SIGKILL
    (path,) = checkpoint_files(store)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "garbage":
        path.write_bytes(os.urandom(path.stat().st_size))
    else:  # readable, of this run, but its model's tensors of another shape
        saved = torch.load(path, weights_only=True)
        name = next(iter(saved["state"]["model"]))
        saved["state"]["model"][name] = torch.zeros(3, 3)
        torch.save(saved, path)
    result = train(repo, store)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: the checkpoint")]
    assert len(warnings) == 1
    assert warnings[0].endswith(f"set aside as {path.name}.damaged, training starts from epoch 0")
    assert "resuming" not in result.stderr and "epoch   1:" in result.stderr
    assert outputs(repo) == never_stopped
    assert [p.name for p in store.iterdir()] == [f"{path.name}.damaged"]


def test_a_store_that_cannot_be_written_is_one_line_before_training(prepared, tmp_path):
    repo = copy(prepared, tmp_path / "repo")
    (tmp_path / "a-file").write_text("not a folder")
    result = train(repo, tmp_path / "a-file" / "store")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: the checkpoint store {tmp_path / 'a-file' / 'store'} cannot be written (Not a directory); "
        "set $VAEPIPE_CHECKPOINTS to a folder you may write, or train.checkpoint_every: 0"]
    assert not (repo / "models").exists()
