"""DVC's own views of the project: `dvc plots diff` over experiments draws every chart with
no network (the libraries inlined from npm into the page template .dvc/config names), and
the charts read right (named axes, curves from epoch 1, 20 colours, dimensions in numeric
order, rate–distortion labelled with β); `make show` fits 120 columns and marks changes
within the seeds' spread."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from support import BIN, ROOT, committed_run, dvc

pytestmark = pytest.mark.e2e
BETAS = ("0.5", "2", "4")


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, list[str]]:
    """A project run and committed, then a β sweep of experiments on it."""
    if not (ROOT / "node_modules" / "vega").exists():
        pytest.skip("vega is not installed: `make install` runs npm ci (.ci/run installs npm)")
    repo = committed_run(tmp_path_factory.mktemp("views") / "repo")
    for beta in BETAS:
        dvc(repo, "exp", "run", "-n", f"beta-{beta.replace('.', '_')}", "-S", f"beta={beta}", timeout=1800)
    return repo, ["HEAD", *(f"beta-{beta.replace('.', '_')}" for beta in BETAS)]


def test_dvc_plots_diff_draws_every_chart_offline(swept, browser, tmp_path):
    repo, revisions = swept
    dvc(repo, "plots", "diff", *revisions, "-o", str(tmp_path / "plots"))
    page_file = tmp_path / "plots" / "index.html"
    assert "cdn.jsdelivr" not in page_file.read_text()
    charts = [name for name, entries in json.loads(dvc(repo, "plots", "diff", *revisions, "--json").stdout)["data"]
              .items() if any(entry["type"] == "vega" for entry in entries)]
    page = browser.new_page()
    outside, errors = [], []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
               else (outside.append(route.request.url), route.abort()))
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(page_file.as_uri())
        page.wait_for_function(f"document.querySelectorAll('.vega-embed svg, .vega-embed canvas').length >= "
                               f"{len(charts)}", timeout=60_000)
        sizes = page.evaluate("[...document.querySelectorAll('.vega-embed')].map(e => "
                              "[e.getBoundingClientRect().width, e.getBoundingClientRect().height])")
    finally:
        page.close()
    assert outside == [] and errors == []
    assert len(sizes) == len(charts) >= 8
    assert all(width > 100 and height > 100 for width, height in sizes), sizes


def specs(repo: Path, revisions: list[str]) -> dict[str, dict]:
    shown = json.loads(dvc(repo, "plots", "diff", *revisions, "--json").stdout)["data"]
    return {name: entry["content"] for name, entries in shown.items() for entry in entries if entry["type"] == "vega"}


def test_the_charts_read_right(swept):
    repo, revisions = swept
    charts = specs(repo, revisions)
    curves = {name: spec for name, spec in charts.items() if "by epoch" in json.dumps(spec.get("title"))}
    assert len(curves) == 4  # the test and training loss, the reconstruction, the KL: one term a chart
    for spec in curves.values():
        assert {"filter": "toNumber(datum.epoch) >= 1"} in spec["transform"]  # epoch 0 would flatten them
        assert spec["encoding"]["y"]["title"].endswith("per image (nats)")
        palette = spec["encoding"]["color"]["scale"]["range"]
        assert len(set(palette)) == len(palette) == 20  # an experiment a colour, up to 20
        assert {row["rev"] for row in spec["data"]["values"]} == set(revisions)
    dims = charts["plots/kl_per_dim.csv"]
    assert dims["encoding"]["x"] == {"field": "dimension", "type": "ordinal", "title": "latent dimension"}
    assert {"calculate": "toNumber(datum.dim)", "as": "dimension"} in dims["transform"]  # 0, 1, 2, …, 10
    curve = charts["plots/rate_distortion.csv"]
    marks = [layer["mark"]["type"] for layer in curve["layer"]]
    assert marks == ["line", "point", "text"]
    assert curve["layer"][0]["encoding"]["order"]["field"] == "β"  # joined in β order
    assert curve["layer"][2]["encoding"]["text"]["field"] == "β"  # each point labelled
    assert sorted(float(row["beta"]) for row in curve["data"]["values"]) == [0.5, 1.0, 2.0, 4.0]
    assert curve["encoding"]["x"]["title"].startswith("rate") and curve["encoding"]["y"]["title"].startswith("dist")
    projection = charts["plots/projection.csv"]  # a panel per experiment and epoch, never one frame
    assert projection["encoding"]["row"]["field"] == "rev" and projection["encoding"]["column"]["field"] == "at epoch"


def test_make_show_fits_120_columns_and_marks_noise(swept):
    repo, _ = swept
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    shown = subprocess.run([str(BIN / "python"), "-m", "vaepipe.runs.table", "--metrics",
                            "test.loss,test.recon,test.kl,test.iw_nll,samples.fd"],
                           cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120, shown.stdout
    assert lines[0].split("|")[1].strip() == "experiment" and "beta" in lines[0]
    marked = any("≈" in line for line in lines[2:] if line.startswith("|"))
    assert marked == lines[-1].startswith("≈: within what reseeding the default run gives")
    rows = {line.split("|")[1].strip() for line in lines[2:] if line.startswith("|")}
    assert {f"beta-{beta.replace('.', '_')}" for beta in BETAS} <= rows


def test_without_npm_the_page_is_dvcs_own(tmp_path):
    """No node_modules: the template keeps DVC's {scripts} (its CDN), so `dvc plots` still
    draws where there is a network, instead of failing on a missing template."""
    from vaepipe.runs.plots_page import main

    out = tmp_path / "page.html"
    assert main([str(tmp_path / "no-node-modules"), str(out)]) == 0
    text = out.read_text()
    assert "{scripts}" in text and "{plot_divs}" in text and "<script>" not in text
