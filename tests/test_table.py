"""`python -m vaepipe.runs.table`: real experiments of a real DVC repository, read back as the
sweep table the docs print."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pandas as pd
import pytest

from support import ROOT, dvc, git, stage_env

# a one-stage pipeline whose metrics are exact functions of its params
STAGE = """import json, yaml
p = yaml.safe_load(open("params.yaml"))
beta = p["beta"]
json.dump({"test": {"kl": 24 / beta, "recon": 70 + 3 * beta, "loss": 70 + 3 * beta + 24},
           "samples": {"fd": 100 + beta}}, open("eval.json", "w"))
"""
DVC_YAML = """stages:
  evaluate:
    cmd: python stage.py
    deps: [stage.py]
    params: [beta, hidden, train.lr]
    metrics: [eval.json]
"""


@pytest.fixture(scope="module")
def sweep_repo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "stage.py").write_text(STAGE)
    (folder / "dvc.yaml").write_text(DVC_YAML)
    (folder / "params.yaml").write_text("beta: 1\nhidden: null\ntrain:\n  lr: 0.001\n  batch_size: 256\n")
    git(folder, "init", "-q", "-b", "main")
    dvc(folder, "init", "-q")
    dvc(folder, "config", "core.analytics", "false")
    dvc(folder, "repro")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "baseline")
    for beta in ("4", "0.25"):
        dvc(folder, "exp", "run", "-n", f"beta-{beta}", "-S", f"beta={beta}")
    # each run starts from the workspace the last one left: set β back as well
    dvc(folder, "exp", "run", "-n", "wider", "-S", "beta=1", "-S", "hidden=[8,8]")  # null in the others: –
    return folder


def table(folder, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaepipe.runs.table", *args], cwd=folder, env=stage_env(),
                          capture_output=True, text=True, timeout=120)


def test_every_experiment_is_a_row_sorted_by_the_param_that_varies(sweep_repo):
    result = table(sweep_repo)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    # only the params that differ between the runs; train.lr is the same everywhere
    assert header == ["experiment", "beta", "hidden", "test.kl", "test.recon", "test.loss", "samples.fd"]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert rows == [["beta-0.25", "0.25", "–", "96.00", "70.75", "94.75", "100.25"],
                    ["main", "1", "–", "24.00", "73.00", "97.00", "101.00"],
                    ["wider", "1", "[8, 8]", "24.00", "73.00", "97.00", "101.00"],
                    ["beta-4", "4", "–", "6.00", "82.00", "106.00", "104.00"]]


def test_csv_keeps_every_value_in_full_and_metrics_picks_the_columns(sweep_repo):
    result = table(sweep_repo, "--csv", "--metrics", "test.kl,missing.metric")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["experiment"] for row in rows] == ["beta-0.25", "main", "wider", "beta-4"]
    assert [float(row["test.kl"]) for row in rows] == [96.0, 24.0, 24.0, 6.0]
    assert list(rows[0]) == ["experiment", "beta", "hidden", "test.kl"]  # a metric no run has is left out


def test_outside_a_dvc_repository_one_line_and_a_failure(tmp_path):
    git(tmp_path, "init", "-q")
    result = table(tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: dvc exp show failed") and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_a_change_within_the_seeds_spread_is_marked():
    """docs/spread.json: test.loss has σ 0.46 over five seeds; an AVX-512 machine's 98.14
    against the record's 98.06 is within noise, a change of 2 nats is not."""
    from vaepipe.runs.noise import spread, within_noise
    from vaepipe.runs.table import readable

    stds = spread(ROOT / "docs" / "spread.json")
    assert stds["test.loss"] == pytest.approx(0.46, abs=0.01)
    assert within_noise("test.loss", 98.14 - 98.06, stds) is True
    assert within_noise("test.loss", 2.0, stds) is False
    assert within_noise("test.unknown", 0.0, stds) is None
    table = pd.DataFrame({"beta": [1.0, 2.0, 4.0], "test.loss": [98.06, 98.14, 110.0]}, index=["main", "a", "b"])
    shown = readable(table, ["beta"], "main", stds)
    assert list(shown["test.loss"]) == ["98.06", "98.14 ≈", "110.00"]
