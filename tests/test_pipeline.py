"""End to end: a git repository holding a copy of the project, small IDX files served by a
mirror on 127.0.0.1, and the real `dvc repro`, `dvc exp run`, `dvc metrics diff`,
`dvc exp show` and `dvc plots show`. The tests run in order on one repository."""

from __future__ import annotations

import csv
import json
import re
import shutil
import time

import pytest
import yaml

from conftest import Mirror, dvc, git, make_repo, write_dataset

pytestmark = pytest.mark.e2e

STAGES = ["download", "normalize", "train", "classifier", "evaluate", "generate", "project"]
PNGS = ["samples", "reconstructions", "morph", "projection"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    mirror = Mirror(write_dataset(tmp_path_factory.mktemp("mirror")))
    yield make_repo(tmp_path_factory.mktemp("repo"), mirror.url)
    mirror.close()


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def lock_md5s(repo) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {out["path"]: out.get("md5") for stage in lock["stages"].values() for out in stage.get("outs", [])}


def test_repro_runs_every_stage(repo):
    result = dvc(repo, "repro")
    assert sorted(ran(result.stdout)) == sorted(STAGES)
    for name in ["models/model.pt", "metrics/train.json", "metrics/eval.json", "plots/training.csv",
                 "plots/projection.csv"] + [f"plots/{png}.png" for png in PNGS]:
        assert (repo / name).is_file(), name
    rows = list(csv.DictReader((repo / "plots/training.csv").open()))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    assert float(rows[-1]["test_loss"]) < float(rows[0]["test_loss"])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline run")


def test_second_repro_runs_nothing(repo):
    result = dvc(repo, "repro")
    assert ran(result.stdout) == []
    assert "up to date" in result.stdout


def test_from_scratch_runs_give_identical_model_and_metrics(repo):
    before = lock_md5s(repo)
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / "models")
    dvc(repo, "repro", "--force")
    after = lock_md5s(repo)
    assert after == before
    assert {"models/model.pt", "metrics/train.json", "metrics/eval.json"} <= set(after)
    assert git(repo, "status", "--porcelain") == ""  # git-tracked metrics and plots: same bytes


def test_beta_2_reruns_only_train_and_after(repo):
    result = dvc(repo, "exp", "run", "-S", "beta=2")
    assert sorted(ran(result.stdout)) == ["evaluate", "generate", "project", "train"]


def test_metrics_diff_shows_changed_kl_and_recon(repo):
    diff = json.loads(dvc(repo, "metrics", "diff", "--json").stdout)["metrics/eval.json"]
    for key in ("test.kl", "test.recon"):
        assert diff[key]["old"] != diff[key]["new"], key
    assert diff["test.kl"]["new"] < diff["test.kl"]["old"]  # a heavier KL weight shrinks the KL


def test_exp_show_lists_both_runs(repo):
    rows = list(csv.DictReader(dvc(repo, "exp", "show", "--csv").stdout.splitlines()))
    betas = sorted(float(row["beta"]) for row in rows if row["Experiment"])
    assert betas == [2.0]
    assert {float(row["beta"]) for row in rows} == {1.0, 2.0}
    assert all(row["test.kl"] for row in rows)


def test_plots_show_renders_every_plot(repo):
    dvc(repo, "plots", "show", "-o", "dvc_plots")
    html = (repo / "dvc_plots" / "index.html").read_text()
    for png in PNGS:
        assert f"{png}.png" in html
    plots = yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]
    for title in [next(iter(plot)) for plot in plots if isinstance(plot, dict)]:
        assert title in html  # the data plots are inlined under their titles
    for column in ("train_loss", "test_loss", "train_recon", "test_recon", "train_kl", "test_kl", "kl"):
        assert f'"field": "{column}"' in html


def test_plots_diff_overlays_baseline_and_experiment(repo):
    plots = json.loads(dvc(repo, "plots", "diff", "HEAD", "--json").stdout)["data"]
    curves = plots["Loss per image by epoch (row 0 = untrained)"][0]
    assert sorted(curves["revisions"]) == ["HEAD", "workspace"]
    revisions = {point["rev"] for point in curves["content"]["data"]["values"]}
    assert revisions == {"HEAD", "workspace"}  # both runs' curves, in one plot


def test_kl_per_dim_adds_up_to_the_test_kl(repo):
    rows = list(csv.DictReader((repo / "plots/kl_per_dim.csv").open()))
    kl = json.loads((repo / "metrics/eval.json").read_text())["test"]["kl"]
    assert [int(row["dim"]) for row in rows] == [0, 1, 2, 3]
    assert sum(float(row["kl"]) for row in rows) == pytest.approx(kl, rel=1e-4)


def test_ae_experiment_runs_end_to_end_without_a_bound(repo):
    result = dvc(repo, "exp", "run", "-S", "model=ae", "-S", "beta=1")
    assert sorted(ran(result.stdout)) == ["evaluate", "generate", "project", "train"]
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert "iw_nll" not in metrics["test"] and "fd" in metrics["samples"]
    assert metrics["test"]["loss"] == metrics["test"]["recon"]  # no KL term in an AE's loss


def test_queued_beta_sweep_runs_every_experiment(repo):
    git(repo, "checkout", "HEAD", "--", "params.yaml")  # sweep from the baseline, not the last exp
    dvc(repo, "exp", "run", "--queue", "-S", "beta=0.5,1,2,4")
    # the workers outlive `queue start` and keep its output open: send it to a file, not a pipe
    with open(repo.parent / "queue.log", "w") as log:
        dvc(repo, "queue", "start", "-j", "2", stdout=log)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            status = dvc(repo, "queue", "status").stdout
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            time.sleep(3)
    finally:
        dvc(repo, "queue", "stop", "--kill", check=False)
    assert "Failed" not in status and status.count("Success") == 4, status
    rows = list(csv.DictReader(dvc(repo, "exp", "show", "--csv").stdout.splitlines()))
    swept = {float(row["beta"]): row for row in rows if row["Experiment"] and row["model"] == "vae"}
    assert {0.5, 1.0, 2.0, 4.0} <= set(swept)
    for row in swept.values():
        assert row["test.recon"] and row["test.kl"] and row["test.iw_nll"] and row["samples.fd"]
