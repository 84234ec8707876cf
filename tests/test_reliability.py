"""Faults, bad inputs and interrupted runs: one clear line, a non-zero exit, nothing lost."""

from __future__ import annotations

import gzip
import os
import re
import signal
import struct
import subprocess
import sys
import time

import pytest
import torch

from support import (BIN, ROOT, Mirror, dvc, make_repo, refused_url, run_stage, set_params, stage_env,
                      write_dataset)
from vaepipe.atomic import atomic_path, write_json
from vaepipe.layout import FILES
from test_pipeline import ran

FAULTS = ["refused", 404, 500, "truncate", "garbage", "slow"]
REASONS = {"refused": "refused", 404: "HTTP 404", 500: "HTTP 500", "truncate": "truncated",
           "garbage": "checksum mismatch", "slow": "timed out"}


def one_line_error(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def nothing_in_data(workdir) -> bool:
    data = workdir / "data"
    return not data.exists() or not any(data.rglob("*"))


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "mirror", train=100, test=30)


def faulty_mirror(fault, folder, serve) -> str:
    if fault == "refused":
        return refused_url()
    return serve(folder, {name: fault for name in FILES}, slow_seconds=3).url


@pytest.mark.parametrize("fault", FAULTS)
def test_faulty_mirror_alone_gives_one_line_and_no_partial_file(fault, dataset, workdir, serve):
    set_params(workdir, data__dataset="custom", data__timeout=1,
               data__mirror=faulty_mirror(fault, dataset, serve))
    line = one_line_error(run_stage("download", workdir))
    assert "could not fetch" in line and REASONS[fault] in line and "data.mirror" in line
    assert nothing_in_data(workdir)


@pytest.mark.parametrize("fault", FAULTS)
def test_faulty_mirror_falls_through_to_the_next(fault, dataset, workdir, serve):
    good = serve(dataset)
    set_params(workdir, data__dataset="custom", data__timeout=1,
               data__mirror=[faulty_mirror(fault, dataset, serve), good.url])
    result = run_stage("download", workdir)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (workdir / "data/raw").iterdir()) == sorted(FILES)
    assert set(FILES) <= set(good.requests)


def test_malformed_md5sums_gives_one_line(dataset, workdir):
    (dataset / "MD5SUMS").write_text("d41d8cd98f00b204e9800998ecf8427e\n")
    set_params(workdir, data__dataset="custom", data__mirror=str(dataset))
    line = one_line_error(run_stage("download", workdir))
    assert "MD5SUMS line 1 is not `<md5>  <file>`" in line
    assert nothing_in_data(workdir)


def corrupt(folder, name, transform):
    path = folder / name
    path.write_bytes(gzip.compress(transform(gzip.decompress(path.read_bytes())), mtime=0))


CORRUPTIONS = {
    "truncated images": ("train-images-idx3-ubyte.gz", lambda b: b[: len(b) // 2], "truncated"),
    "wrong magic": ("t10k-labels-idx1-ubyte.gz", lambda b: struct.pack(">I", 2051) + b[4:], "magic number"),
    "counts disagree": ("train-labels-idx1-ubyte.gz",
                        lambda b: struct.pack(">II", 2049, 99) + b[8:107], "100 images but 99 labels"),
    "not gzip": ("t10k-images-idx3-ubyte.gz", None, "corrupt"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_idx_file_gives_one_line(case, dataset, workdir):
    set_params(workdir, data__dataset="custom", data__mirror=str(dataset))
    assert run_stage("download", workdir).returncode == 0
    name, transform, reason = CORRUPTIONS[case]
    raw = workdir / "data/raw"
    if transform is None:
        (raw / name).write_bytes(b"\x1f\x8b\x08 cut short")
    else:
        corrupt(raw, name, transform)
    line = one_line_error(run_stage("normalize", workdir))
    assert reason in line and name.split("-")[0] in line
    assert not (workdir / "data/normalized").exists()


@pytest.mark.parametrize("stage, before", [("normalize", "download"), ("train", "normalize"),
                                           ("evaluate", "train"), ("generate", "train"),
                                           ("project", "train")])
def test_stage_without_its_inputs_names_the_stage_to_run_first(stage, before, workdir):
    line = one_line_error(run_stage(stage, workdir))
    assert f"run `dvc repro {before}` first" in line
    assert sorted(p.name for p in workdir.iterdir()) == ["params.yaml"]


@pytest.fixture
def normalized(dataset, workdir):
    set_params(workdir, data__dataset="custom", data__mirror=str(dataset), d=4, epochs=2,
               project__epochs=[0, 2])
    for stage in ("download", "normalize"):
        assert run_stage(stage, workdir).returncode == 0
    return workdir


def test_diverging_run_names_the_epoch_and_writes_no_model(normalized):
    set_params(normalized, train__lr=1e9)
    line = one_line_error(run_stage("train", normalized))
    assert re.search(r"the loss became (nan|inf|-inf) at epoch \d+, batch \d+ of \d+", line)
    assert "lower train.lr" in line
    assert not (normalized / "models").exists() and not (normalized / "plots").exists()
    assert [path.name for path in (normalized / "metrics").iterdir()] == ["data.json"]  # normalize's, before


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_tampered_model_is_refused(normalized):
    model_path = normalized / "models/model.pt"
    model_path.parent.mkdir()
    torch.save({"state_dict": {}, "hparams": {"d": 4, "variational": True}, "extra": Payload()},
               model_path)
    for stage in ("evaluate", "generate"):
        line = one_line_error(run_stage(stage, normalized))
        assert "models/model.pt is not a model this project wrote" in line
    assert not (normalized / "pwned.txt").exists()


def test_every_torch_load_uses_weights_only():
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "stages").glob("*.py")]:
        for line in path.read_text().splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"


def start_training(folder, **popen):
    return subprocess.Popen([sys.executable, str(ROOT / "stages/train.py")], cwd=folder,
                            env=stage_env(), stderr=subprocess.PIPE, text=True, **popen)


def wait_for_line(stream, text, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if text in line:
            return
    raise AssertionError(f"never saw {text!r}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_prints_one_line_and_writes_no_model(signum, tmp_path, workdir):
    set_params(workdir, data__dataset="custom", epochs=200, d=8, project__epochs=[0],
               data__mirror=str(write_dataset(tmp_path / "big", train=20000, test=100)))
    for stage in ("download", "normalize"):
        assert run_stage(stage, workdir).returncode == 0
    process = start_training(workdir)
    wait_for_line(process.stderr, "epoch   1:")  # mid-run, inside epoch 2
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert f"stopped by {signal.Signals(signum).name}" in stderr
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == \
        [line for line in stderr.splitlines() if "stopped by" in line]
    assert not (workdir / "models").exists()
    assert not list(workdir.glob("**/.*.tmp"))


def test_a_stop_as_the_temporary_file_is_made_leaves_nothing(tmp_path, monkeypatch):
    """The live curves are rewritten just as an epoch's line is printed, which is when a
    user (or the test above) presses Ctrl-C: a stop landing right after the temporary file
    was created, before its name was known to the cleanup, used to leave it behind."""
    create = os.open

    def create_then_stop(*args):
        fd = create(*args)
        os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt before this returns
        return fd

    # Python's own Ctrl-C handler, even where this process was started with SIGINT ignored
    # (a background job of a non-interactive shell, as CI runs may be)
    monkeypatch.setattr(os, "open", create_then_stop)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            write_json(tmp_path / "train.json", {"train": {"loss": 1.0}})
    finally:
        signal.signal(signal.SIGINT, previous)
        monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_the_modes_a_new_file_or_folder_gets(tmp_path):
    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "out.json", {})
        with atomic_path(tmp_path / "folder", directory=True) as folder:
            (folder / "inside").write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
    assert sorted(path.name for path in tmp_path.iterdir()) == ["folder", "out.json"]


@pytest.mark.e2e
def test_ctrl_c_during_repro_then_repro_runs_cleanly(tmp_path):
    mirror = Mirror(write_dataset(tmp_path / "mirror", train=20000, test=100))
    try:
        repo = make_repo(tmp_path / "repo", mirror.url, epochs=200, project__epochs=[0, 1])
        process = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=repo, env=stage_env(),
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        wait_for_line(process.stderr, "epoch   1:")
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        process.communicate(timeout=60)
        assert process.returncode != 0
        assert not (repo / "models/model.pt").exists()
        set_params(repo, epochs=1)
        result = dvc(repo, "repro")
        stages = set(ran(result.stdout))
        assert {"train", "evaluate", "generate", "project"} <= stages
        assert not stages & {"download", "normalize"}  # finished before the interrupt: kept
    finally:
        mirror.close()


CRASH = """
import os, shutil, sys
from pathlib import Path
import vaepipe.atomic as atomic
step, fallback = sys.argv[1], sys.argv[2] == "fallback"
def die(*args, **kwargs):
    os._exit(9)
if fallback:
    atomic._exchange = lambda a, b: False
if step == "fill":
    atomic._fsync_tree = die
elif step == "swap":
    atomic.swap_folders = die
elif step.startswith("rename"):  # the fallback's renames: die at the n-th
    calls, n, rename = [], int(step[-1]), os.rename
    def counted(*args):
        calls.append(1)
        die() if len(calls) == n else rename(*args)
    os.rename = counted
elif step == "clean":
    shutil.rmtree = die
with atomic.atomic_path(Path(sys.argv[3]), directory=True) as tmp:
    for i in range(3):
        (tmp / f"part{i}").write_text("new")
"""


@pytest.mark.parametrize("fallback, step", [("exchange", "fill"), ("exchange", "swap"), ("exchange", "clean"),
                                            ("fallback", "rename1"), ("fallback", "rename2"),
                                            ("fallback", "rename3"), ("fallback", "clean")])
def test_folder_output_survives_a_crash_at_each_step(tmp_path, fallback, step):
    """The process dies at each step of replacing a folder output: the old folder (all of
    it) or the new one (all of it) is always there, under its name or, between the
    fallback's two renames, complete beside it."""
    target = tmp_path / "out"
    target.mkdir()
    for i in range(3):
        (target / f"part{i}").write_text("old")
    result = subprocess.run([sys.executable, "-c", CRASH, step, fallback, str(target)], env=stage_env())
    assert result.returncode == 9
    folders = [target] + [path for path in tmp_path.iterdir() if path.name.endswith(".old")]
    complete = [{p.read_text() for p in folder.iterdir()} for folder in folders if folder.is_dir()
                and len(list(folder.iterdir())) == 3]
    assert complete and all(len(contents) == 1 for contents in complete)
    if target.is_dir():
        assert len(list(target.iterdir())) == 3  # never a half-filled folder under its name
    if step == "clean":
        assert (target / "part0").read_text() == "new"
    # a rerun puts the new output in place whatever was left
    subprocess.run([sys.executable, "-c", CRASH, "none", fallback, str(target)], env=stage_env(), check=True)
    assert {p.read_text() for p in target.iterdir()} == {"new"}
