"""Training that survives being stopped (vaepipe.training.checkpoint): the train stage killed at
several points, then run again, resumes from its last checkpoint and ends with outputs
byte-identical to a run never stopped; a checkpoint of other params, other code or
damaged is never used."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from support import Mirror, deflated, make_repo, set_params, write_dataset

EPOCHS, STEPS_PER_EPOCH = 4, 32  # 2000 training images in batches of 64
OUTPUTS = ("models/model.pt", "models/snapshots", "metrics/train.json", "plots/training.csv", "metrics/machine.json")

# Runs the project's own train stage in a process that stops itself: with a signal's name,
# that signal sent at the given Adam step (in the middle of an epoch); with "write", SIGKILL
# halfway through writing the checkpoint of the given epoch, the bytes so far on disk.
STOPPING = """
import io, os, runpy, signal, sys
import torch
from vaepipe.model import optim
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


def train(repo: Path, store: Path, stop: tuple[str, int] | None = None, env: dict | None = None
          ) -> subprocess.CompletedProcess:
    command = [sys.executable, "stages/train.py"] if stop is None else [sys.executable, "-c", STOPPING, *map(str, stop)]
    return subprocess.run(command, cwd=repo, env=env_for(repo, store) | (env or {}), capture_output=True, text=True,
                          timeout=600)


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
        loss = repo / "src" / "vaepipe" / "model" / "loss.py"
        loss.write_text(loss.read_text() + "# a change\n")
    fresh = train(repo, store)
    assert fresh.returncode == 0, fresh.stderr
    assert "resuming" not in fresh.stderr
    assert "epoch   1:" in fresh.stderr
    # the other run's checkpoint is left as it was, for that run; this run's is removed
    assert checkpoint_files(store) == [theirs] and theirs.read_bytes() == before
    if change == "beta":
        assert (repo / "plots" / "training.csv").read_text().splitlines()[-1].split(",")[1] == "2.0"


def signed_payload(path: Path) -> tuple[bytes, dict]:
    """A checkpoint's header (magic and signature) and what torch.save wrote after it."""
    from vaepipe.training.checkpoint import MAC_BYTES, MAGIC

    data = path.read_bytes()
    head = len(MAGIC) + MAC_BYTES
    return data[:head], torch.load(io.BytesIO(data[head:]), weights_only=True)


def planted(path: Path, saved: dict, *, compressed: bool = False, key: str | None = None) -> None:
    """`saved` written to `path` as the store's writer would: signed with a secret it knows
    (`key`), or keeping the original signature (key None: the bytes tampered with)."""
    from vaepipe.training.checkpoint import MAC_BYTES, MAGIC

    buffer = io.BytesIO()
    torch.save(saved, buffer)
    archive = buffer.getvalue()
    if compressed:
        archive = deflated(archive)
    if key is None:
        signature = path.read_bytes()[len(MAGIC):len(MAGIC) + MAC_BYTES]
    else:
        mac = hmac.new(key.encode(), MAGIC + saved["key"].encode() + archive, hashlib.sha256)
        signature = mac.digest()
    path.write_bytes(MAGIC + signature + archive)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "tampered", "planted", "epoch-past-the-end",
                                    "non-tensor-state", "compressed", "history-invented"])
def test_a_damaged_or_forged_checkpoint_is_set_aside_and_training_starts_over(prepared, never_stopped, tmp_path,
                                                                             damage):
    """Whoever may write to the store cannot plant a run: a checkpoint not signed with this
    user's secret, or one whose contents are not what this run saves, is set aside with one
    line and training starts from epoch 0, ending as a run never stopped."""
    repo, store = copy(prepared, tmp_path / "repo"), tmp_path / "store"
    assert train(repo, store, ("SIGKILL", 2 * STEPS_PER_EPOCH + 3)).returncode == -signal.SIGKILL
    (path,) = checkpoint_files(store)
    own = os.environ["VAEPIPE_CHECKPOINT_SECRET"]
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "garbage":
        path.write_bytes(os.urandom(path.stat().st_size))
    else:
        _, saved = signed_payload(path)
        model = saved["state"]["model"]
        if damage == "tampered":  # an all-white model under the original signature
            model[next(iter(model))].fill_(1.0)
            planted(path, saved)
        elif damage == "planted":  # an all-white model signed with the key a writer of the store can guess
            model[next(iter(model))].fill_(1.0)
            planted(path, saved, key="vaepipe")
        elif damage == "epoch-past-the-end":  # signed, but nothing would be left to train
            saved["epoch"] = EPOCHS
            planted(path, saved, key=own)
        elif damage == "non-tensor-state":
            saved["state"]["model"] = {name: [1.0] for name in model}
            planted(path, saved, key=own)
        elif damage == "compressed":
            planted(path, saved, compressed=True, key=own)
        else:  # invented loss rows
            saved["state"]["history"]["rows"][1]["test_loss"] = float("nan")
            planted(path, saved, key=own)
    result = train(repo, store)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: the checkpoint")]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].endswith(f"set aside as {path.name}.damaged, training starts from epoch 0")
    if damage in ("tampered", "planted"):
        assert "signature does not match" in warnings[0]
    assert "resuming" not in result.stderr and "epoch   1:" in result.stderr
    assert outputs(repo) == never_stopped
    assert [p.name for p in store.iterdir()] == [f"{path.name}.damaged"]


def test_the_secret_in_a_file_signs_as_in_the_environment(prepared, never_stopped, tmp_path):
    """cloud/run.sh hands the launch's secret to the train stage as a file, out of every
    stage's environment: a checkpoint signed under $VAEPIPE_CHECKPOINT_SECRET resumes under
    $VAEPIPE_CHECKPOINT_SECRET_FILE naming a file that holds it; a file that cannot be read,
    or holds too short a secret, is one error line and exit 1 before training."""
    repo, store = copy(prepared, tmp_path / "repo"), tmp_path / "store"
    assert train(repo, store, ("SIGKILL", 2 * STEPS_PER_EPOCH + 3)).returncode == -signal.SIGKILL
    key = tmp_path / "checkpoint-secret"
    for content, message in ((None, "cannot be read (No such file or directory)"),
                             ("short", "is shorter than 16 characters")):
        if content is not None:
            key.write_text(content)
        result = train(repo, store, env={"VAEPIPE_CHECKPOINT_SECRET": "", "VAEPIPE_CHECKPOINT_SECRET_FILE": str(key)})
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: the file $VAEPIPE_CHECKPOINT_SECRET_FILE names ({key})") and message in line
    key.write_text(os.environ["VAEPIPE_CHECKPOINT_SECRET"] + "\n")  # as `echo` writes it
    result = train(repo, store, env={"VAEPIPE_CHECKPOINT_SECRET": "", "VAEPIPE_CHECKPOINT_SECRET_FILE": str(key)})
    assert result.returncode == 0, result.stderr
    assert "resuming from the checkpoint of epoch 2" in result.stderr
    assert outputs(repo) == never_stopped


def test_a_folder_named_like_a_leftover_and_a_second_run_are_no_crash(prepared, never_stopped, tmp_path):
    """A folder where a leftover temporary file would be is removed like one; a second run
    with the same key on the same store, started while the first writes, trains without
    checkpoints instead of deleting the first one's temporary file."""
    repo, store = copy(prepared, tmp_path / "repo"), tmp_path / "store"
    assert train(repo, store, ("SIGKILL", 2 * STEPS_PER_EPOCH + 3)).returncode == -signal.SIGKILL
    (path,) = checkpoint_files(store)
    (store / f".{path.name}.0123456789abcdef.tmp" / "inside").mkdir(parents=True)
    other = copy(prepared, tmp_path / "other")
    first = subprocess.Popen([sys.executable, "stages/train.py"], cwd=repo, env=env_for(repo, store),
                             stderr=subprocess.PIPE, text=True)
    while "resuming" not in (line := first.stderr.readline()) and line:
        pass
    assert "resuming from the checkpoint of epoch 2 " in line
    first.send_signal(signal.SIGSTOP)  # paused mid-run, its checkpoint's lock held
    try:
        second = train(other, store)
    finally:
        first.send_signal(signal.SIGCONT)
    rest = first.communicate(timeout=600)[1]
    assert first.returncode == 0 and second.returncode == 0, rest + second.stderr
    assert "holds" in second.stderr and "trains without checkpoints" in second.stderr, second.stderr
    assert "resuming" not in second.stderr and "Traceback" not in second.stderr + rest
    assert outputs(repo) == never_stopped and outputs(other) == never_stopped
    assert not list(store.iterdir())


def test_a_checkpoint_of_another_machine_kind_starts_over_unless_asked(prepared, tmp_path):
    """Killed under 2 threads, run again under 1: by default training starts over and ends
    byte-identical to a 1-thread run never stopped; with train.resume_across_machines it
    resumes, and metrics/machine.json says from which machine."""
    one_thread = {"OMP_NUM_THREADS": "1"}
    reference, store = copy(prepared, tmp_path / "reference"), tmp_path / "reference-store"
    assert train(reference, store, env=one_thread).returncode == 0
    repo, store = copy(prepared, tmp_path / "repo"), tmp_path / "store"
    assert train(repo, store, ("SIGKILL", 2 * STEPS_PER_EPOCH + 3), env={"OMP_NUM_THREADS": "2"}).returncode == -9
    (path,) = checkpoint_files(store)
    kept = path.read_bytes()
    fresh = train(repo, store, env=one_thread)
    assert fresh.returncode == 0, fresh.stderr
    (line,) = [line for line in fresh.stderr.splitlines() if "another kind of machine" in line]
    assert "threads: 1 vs 2" in line and "training starts from epoch 0" in line
    assert "resuming" not in fresh.stderr and "epoch   1:" in fresh.stderr
    assert outputs(repo) == outputs(reference)
    machine = json.loads((repo / "metrics" / "machine.json").read_text())
    assert machine["machine"]["threads"] == 1 and "resumed_across_machines" not in machine

    path.write_bytes(kept)  # the 2-thread checkpoint again, now resumed on purpose
    set_params(repo, train__resume_across_machines=True)
    mixed = train(repo, store, env=one_thread)
    assert mixed.returncode == 0, mixed.stderr
    assert "resuming from the checkpoint of epoch 2 " in mixed.stderr
    resumed = json.loads((repo / "metrics" / "machine.json").read_text())["resumed_across_machines"]
    assert resumed["epoch"] == 2 and resumed["machine"]["threads"] == 2


def test_a_store_that_cannot_be_written_is_one_line_before_training(prepared, tmp_path):
    repo = copy(prepared, tmp_path / "repo")
    (tmp_path / "a-file").write_text("not a folder")
    result = train(repo, tmp_path / "a-file" / "store")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: the checkpoint store {tmp_path / 'a-file' / 'store'} cannot be written (Not a directory); "
        "set $VAEPIPE_CHECKPOINTS to a folder you may write, or train.checkpoint_every: 0"]
    assert not (repo / "models").exists()


def test_a_conv_run_resumes_byte_identical_with_its_batchnorm_statistics(tmp_path):
    """The conv network's BatchNorm keeps running statistics and an int64 count of batches
    beside its weights: the checkpoint carries them, its check takes each tensor's own dtype,
    and the resumed run ends as one never stopped."""
    mirror = Mirror(write_dataset(tmp_path / "data", train=640, test=200))
    try:
        prepared = make_repo(tmp_path / "prepared", mirror.url, epochs=3, arch="conv")
        for stage in ("download", "normalize"):
            subprocess.run([sys.executable, f"stages/{stage}.py"], cwd=prepared,
                           env=env_for(prepared, tmp_path / "unused"), check=True, capture_output=True)
    finally:
        mirror.close()
    whole = copy(prepared, tmp_path / "whole")
    assert train(whole, tmp_path / "whole-store").returncode == 0
    repo, store = copy(prepared, tmp_path / "repo"), tmp_path / "store"
    stopped = train(repo, store, ("SIGTERM", 2 * 10 + 3))  # 640 images in batches of 64: in epoch 3
    assert stopped.returncode == 130, stopped.stderr
    resumed = train(repo, store)
    assert resumed.returncode == 0 and "resuming from the checkpoint of epoch 2 " in resumed.stderr, resumed.stderr
    assert outputs(repo) == outputs(whole)
