"""End to end: a git repository holding a copy of the project, small IDX files served by a
mirror on 127.0.0.1, and the real `dvc repro`, `dvc exp run`, `dvc metrics diff`,
`dvc exp show` and `dvc plots show`. The tests run in order on one repository."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
import time

import pytest
import yaml

from support import BIN, Mirror, dvc, git, make_repo, set_params, stage_env, write_dataset
from vaepipe.runs.markdown import unsafe_links

pytestmark = pytest.mark.e2e

STAGES = ["download", "normalize", "train", "classifier", "evaluate", "generate", "project", "latent", "export",
          "explore"]
PNGS = ["samples", "reconstructions", "morph", "projection", "kl_variance", "traversals", "manifold", "gmm_samples"]


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
    assert sorted(ran(result.stdout)) == ["evaluate", "explore", "export", "generate", "latent", "project", "train"]
    run = json.loads((repo / "explorer/run.json").read_text())  # this experiment's own explorer
    assert run["params"]["beta"] == 2.0 and run["metrics"]["test.kl"] == json.loads(
        (repo / "metrics/eval.json").read_text())["test"]["kl"]


def test_rate_distortion_file_is_one_row_with_the_runs_beta(repo):
    rows = list(csv.DictReader((repo / "plots/rate_distortion.csv").open()))
    test = json.loads((repo / "metrics/eval.json").read_text())["test"]
    assert rows == [{"beta": "2.0", "rate": repr(test["kl"]), "distortion": repr(test["recon"])}]


def test_metrics_diff_shows_changed_kl_and_recon(repo):
    diff = json.loads(dvc(repo, "metrics", "diff", "--json").stdout)["metrics/eval.json"]
    for key in ("test.kl", "test.recon"):
        assert diff[key]["old"] != diff[key]["new"], key
    assert diff["test.kl"]["new"] < diff["test.kl"]["old"]  # a heavier KL weight shrinks the KL


def test_review_report_holds_the_change_and_both_figures(repo):
    env = dict(stage_env(), PYTHONPATH=str(repo / "src"))
    result = subprocess.run([str(BIN / "python"), "-m", "vaepipe.runs.review", "HEAD", "--out", "review"],
                            cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = html.unescape((repo / "review/report.md").read_text())  # its text is escaped
    params = report.split("## Params that changed")[1].split("##")[0]
    assert re.search(r"\| params\.yaml\s*\| beta\s*\| 1\s*\| 2\s*\|", params), params
    diff = json.loads(dvc(repo, "metrics", "diff", "HEAD", "--json").stdout)["metrics/eval.json"]
    for key in ("test.kl", "test.recon"):
        line = next(line for line in report.splitlines()
                    if re.match(rf"\|\s*metrics/eval\.json\s*\|\s*{re.escape(key)}\s*\|", line))
        old, new = (float(cell) for cell in line.split("|")[3:5])  # DVC rounds to 5 decimals
        assert old == pytest.approx(diff[key]["old"], abs=1e-5) and new == pytest.approx(diff[key]["new"], abs=1e-5)
    assert "| test.iw_nll |" in report and "| samples.fd |" in report and "no metrics" not in report
    # each changed metric says whether it lies beyond what reseeding the default run gives
    changed = report.split("## Metrics that changed")[1].split("##")[0]
    assert "beyond reseeding?" in changed
    rows = [line for line in changed.splitlines() if line.startswith("| metrics/")]
    assert rows and all(line.rstrip(" |").rsplit("|", 1)[1].strip() in ("yes", "no ≈", "—") for line in rows)
    for name in ("samples.png", "morph.png", "projection.png"):
        assert f"![base {name}](base/{name})" in report and f"![change {name}](change/{name})" in report
        assert (repo / "review/base" / name).read_bytes() == git_bytes(repo, f"HEAD:plots/{name}")
        assert (repo / "review/change" / name).read_bytes() == (repo / "plots" / name).read_bytes()
    assert (repo / "review/curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_review_shows_a_pull_requests_text_as_text(repo):
    """A param value holding HTML and Markdown reaches the report escaped: no image, link
    or tag that a poster would upload or GitHub would render."""
    params = (repo / "params.yaml").read_text()
    hostile = "<img src=/etc/passwd> ![x](../../.git/config) [y](http://example.org) | **z**"
    set_params(repo, project__method=hostile)
    try:
        env = dict(stage_env(), PYTHONPATH=str(repo / "src"))
        result = subprocess.run([str(BIN / "python"), "-m", "vaepipe.runs.review", "HEAD", "--out", "review-hostile"],
                                cwd=repo, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        report = (repo / "review-hostile/report.md").read_text()
        assert hostile in html.unescape(report)  # shown, as text
        for raw in ("<img", "](../", "](http", "http://", "**z**", "| **"):
            assert raw not in report, raw
        assert unsafe_links(report, repo / "review-hostile") == []
    finally:
        (repo / "params.yaml").write_text(params)
        shutil.rmtree(repo / "review-hostile", ignore_errors=True)


@pytest.mark.parametrize("base", ["HEAD;touch pwned", "$(touch pwned)", "`touch pwned`", "--output=pwned"])
def test_make_review_passes_the_base_as_one_argument(repo, base):
    """`make review BASE=…` with shell syntax in the name runs nothing and fails in one line."""
    result = subprocess.run(["make", "--no-print-directory", "review", f"BASE={base}", f"VENV={BIN.parent}",
                             "INSTALLED="], cwd=repo, env=stage_env(), capture_output=True, text=True)
    assert result.returncode != 0
    assert not (repo / "pwned").exists() and not list(repo.glob("*pwned*"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not a revision" in errors[0], result.stderr


def test_the_post_check_refuses_links_outside_the_report(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base/samples.png").write_bytes(b"\x89PNG")
    (tmp_path / "link.png").symlink_to("/etc/passwd")
    good = "![base](base/samples.png)\n"
    assert unsafe_links(good, tmp_path) == []
    for bad in ("![x](../secret.png)", "![x](/proc/self/environ)", "[x](link.png)", "![x](missing.png)",
                "<img src=x>", "see https://example.org", "[x](base/samples.png \"t\")"):
        assert unsafe_links(good + bad, tmp_path), bad
    report = tmp_path / "report.md"
    report.write_text(good + "![x](../../.git/config)\n")
    result = subprocess.run([str(BIN / "python"), "-m", "vaepipe.runs.markdown", str(report)], capture_output=True,
                            text=True, env=stage_env())
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "not safe to post" in result.stderr


def git_bytes(repo, spec: str) -> bytes:
    return subprocess.run(["git", "show", spec], cwd=repo, capture_output=True, check=True).stdout


def test_review_says_when_the_base_has_no_metrics(repo):
    first = git(repo, "rev-list", "--max-parents=0", "HEAD").strip()  # the commit before any run
    env = dict(stage_env(), PYTHONPATH=str(repo / "src"))
    result = subprocess.run([str(BIN / "python"), "-m", "vaepipe.runs.review", first, "--out", "review-first"],
                            cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = (repo / "review-first/report.md").read_text()
    assert f"**The base {first} has no metrics**" in report
    shutil.rmtree(repo / "review-first")


def test_shared_run_cache_restores_every_stage_in_a_fresh_clone(repo, tmp_path):
    """β = 2 ran in `repo`; a teammate's clone pulls what it made and trains nothing."""
    remote = tmp_path / "dvc-remote"
    dvc(repo, "remote", "add", "--local", "-d", "shared", str(remote))
    share = subprocess.run([str(BIN / "python"), "-m", "vaepipe.runs.share"], cwd=repo, capture_output=True,
                           text=True, env=dict(stage_env(), PYTHONPATH=str(repo / "src")))
    assert share.returncode == 0 and "run-cache entries" in share.stdout, share.stderr
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    dvc(clone, "remote", "add", "--local", "-d", "shared", str(remote))
    result = dvc(clone, "exp", "run", "--pull", "-S", "beta=2")
    assert ran(result.stdout) == [], result.stdout
    restored = re.findall(r"Stage '([^']+)' is cached - skipping run", result.stdout)
    pulled = re.findall(r"Pulling data for stage: '([^']+)'", result.stdout)
    after_train = ["evaluate", "explore", "export", "generate", "latent", "project", "train"]
    assert sorted(restored) == after_train, result.stdout
    assert sorted(restored + pulled) == sorted(STAGES)
    for name in ("metrics/eval.json", "metrics/latent.json", "plots/training.csv", "plots/samples.png"):
        assert (clone / name).read_bytes() == (repo / name).read_bytes(), name


INTERRUPTED_SHARE = """
import os, sys
import vaepipe.runs.share as share
share.push_entries = lambda *args: os._exit(9)  # killed once the outputs are sent
share.main(sys.argv[1:])
"""


def test_an_interrupted_share_rerun_completes_and_check_names_what_is_missing(repo, tmp_path):
    """Killed after the outputs: the remote holds no entry yet (nothing a teammate could
    find without its outputs); run again, it sends the entries, and a third run sends
    nothing and says so. `--check` names a run whose outputs went missing."""
    remote = tmp_path / "second"
    dvc(repo, "remote", "add", "--local", "second", str(remote))
    env = dict(stage_env(), PYTHONPATH=str(repo / "src"))
    python = str(BIN / "python")
    killed = subprocess.run([python, "-c", INTERRUPTED_SHARE, "second"], cwd=repo, env=env)
    assert killed.returncode == 9
    assert list((remote / "files").rglob("*")) and not (remote / "runs").exists()
    again = subprocess.run([python, "-m", "vaepipe.runs.share", "second"], cwd=repo, env=env, capture_output=True,
                           text=True)
    sent = int(re.search(r"then (\d+) run-cache entries", again.stdout).group(1))
    local_entries = sorted(path.name for path in (repo / ".dvc/cache/runs").glob("*/*/*"))
    assert sent == len(local_entries) > 0
    assert sorted(path.name for path in (remote / "runs").glob("*/*/*")) == local_entries
    third = subprocess.run([python, "-m", "vaepipe.runs.share", "second"], cwd=repo, env=env, capture_output=True,
                           text=True)
    assert "received 0 outputs, then 0 run-cache entries" in third.stdout, third.stdout + third.stderr
    check = [python, "-m", "vaepipe.runs.share", "--check", "second"]
    assert subprocess.run(check, cwd=repo, env=env, capture_output=True, text=True).returncode == 0
    model = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["train"]["outs"][0]
    lost = next((remote / "files/md5").glob(f"{model['md5'][:2]}/{model['md5'][2:]}"))
    lost.unlink()
    result = subprocess.run(check, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "train" in result.stderr, result.stderr


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
    for column in ("train_loss", "test_loss", "test_recon", "test_kl"):
        assert f'"field": "{column}"' in html  # a curve a term
    for column in ("kl", "rate", "distortion", "variance", "beta", "dim"):
        assert f'"{column}": "' in html  # the per-dimension and rate–distortion charts' data, inlined
    assert "cdn.jsdelivr" not in html  # the libraries come with the page (.dvc/plots-page.html)


def test_plots_diff_overlays_baseline_and_experiment(repo):
    plots = json.loads(dvc(repo, "plots", "diff", "HEAD", "--json").stdout)["data"]
    curves = plots["Training loss per image by epoch"][0]
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
    assert sorted(ran(result.stdout)) == ["evaluate", "explore", "export", "generate", "latent", "project", "train"]
    run = json.loads((repo / "explorer/run.json").read_text())  # this experiment's own explorer
    assert run["params"]["model"] == "ae" and run["metrics"]["test.kl"] == json.loads(
        (repo / "metrics/eval.json").read_text())["test"]["kl"]
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert "iw_nll" not in metrics["test"] and "fd" in metrics["samples"]
    assert metrics["test"]["loss"] == metrics["test"]["recon"]  # no KL term in an AE's loss


def test_figure_params_never_retrain(repo):
    assert sorted(ran(dvc(repo, "exp", "run", "-S", "generate.samples=9").stdout)) == ["generate", "latent"]
    # the mixture is on the explorer page too: its own explorer, nothing trained
    assert ran(dvc(repo, "exp", "run", "-S", "latent.gmm_components=3").stdout) == ["latent", "explore"]
    assert ran(dvc(repo, "exp", "run", "-S", "latent.traversal_steps=5").stdout) == ["latent"]


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
