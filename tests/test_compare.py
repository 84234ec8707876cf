"""`make compare`: every experiment of a real repository on one static page, driven in
Chromium. The repository holds a committed run, a tag, full and partial experiments, a
failed one, a queued β sweep, and hostile names and values (a branch, an experiment, a
queued param) that must stay text."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import BIN, ROOT, committed_run, dvc, git, serving, stage_env

HOSTILE_BRANCH = "<img/src=x/onerror=document.title='pwned'>"
HOSTILE_EXPERIMENT = '<b>x"&'
HOSTILE_VALUE = '<img src=x onerror="document.title=1">'
FULL = {"beta-0_5": "0.5", "beta-4": "4"}  # the whole pipeline: metrics, figures, explorer
PARTIAL = {f"lr-{n}": str(lr) for n, lr in enumerate([0.0005, 0.002, 0.003, 0.004, 0.005, 0.006])}  # `train` only
QUEUED = {"sweep-8": "8", "sweep-16": "16"}
pytestmark = pytest.mark.e2e


def back_to_head(repo: Path) -> None:
    """`dvc exp run` leaves its params and outputs in the workspace: the next starts from HEAD's."""
    git(repo, "checkout", "--", ".")
    dvc(repo, "checkout", "--force")


STATE = ("HEAD", "git status", "params.yaml", "dvc.lock", "experiments")
CHANGED: list[str] = []  # what of STATE `make compare` changed


def state_of(repo: Path) -> tuple:
    """What building the page must leave as it was: HEAD, every file git sees, the experiments."""
    return (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain", "--ignored=no"),
            (repo / "params.yaml").read_bytes(), (repo / "dvc.lock").read_bytes(),
            git(repo, "for-each-ref", "refs/exps"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = committed_run(tmp_path_factory.mktemp("compare") / "repo")
    git(repo, "tag", "v1")
    git(repo, "branch", HOSTILE_BRANCH)
    for name, beta in FULL.items():
        dvc(repo, "exp", "run", "-n", name, "-S", f"beta={beta}", timeout=1800)
        back_to_head(repo)
    for name, lr in PARTIAL.items():
        dvc(repo, "exp", "run", "-n", name, "-S", f"train.lr={lr}", "train", timeout=1800)
        back_to_head(repo)
    dvc(repo, "exp", "run", "--queue", "-n", "broken", "-S", "epochs=-1")
    dvc(repo, "exp", "run", "--run-all", timeout=600)  # fails: epochs must be ≥ 1
    for name, beta in QUEUED.items():
        dvc(repo, "exp", "run", "--queue", "-n", name, "-S", f"beta={beta}")
    dvc(repo, "exp", "run", "--queue", "-n", HOSTILE_EXPERIMENT, "-S", f"data.mirror='{HOSTILE_VALUE}'")
    return repo


def make_compare(repo: Path) -> subprocess.CompletedProcess:
    """What users type, with this checkout's environment and code."""
    env = stage_env()
    env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run(["make", "--no-print-directory", "compare", f"VENV={BIN.parent}", "INSTALLED="], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def built(repo) -> Path:
    before = state_of(repo)
    result = make_compare(repo)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("compare/: ")
    CHANGED.extend(name for name, now, earlier in zip(STATE, state_of(repo), before) if now != earlier)
    return repo / "compare"


def runs_of(page_folder: Path) -> list[dict]:
    text = (page_folder / "data.js").read_text()
    return json.loads(text.removeprefix("window.COMPARE = ").rstrip().removesuffix(";"))["runs"]


@pytest.fixture
def page(browser, built):
    """The page served as `make explore FOLDER=compare` serves it; every request recorded."""
    with serving(built) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.errors, page.outside = [], []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
        page.context.on("request", lambda request: None if request.url.startswith((url, "blob:", "data:"))
                        else page.outside.append(request.url))
        page.goto(url)
        page.wait_for_function("window.comparePage !== undefined")
        yield page
        page.close()


def row_names(page) -> list[str]:
    return page.locator("#table tbody tr .run-name").all_text_contents()


def column(page, column_id: str) -> list[str]:
    return [text.split()[0] if text.split() else "" for text in
            page.locator(f'#table tbody td[data-column="{column_id}"]').all_text_contents()]


def test_every_run_is_listed_with_its_state(built, repo):
    runs = {run["name"]: run for run in runs_of(built)}
    assert {*FULL, *PARTIAL, *QUEUED, "broken", HOSTILE_EXPERIMENT, "workspace"} <= set(runs)
    head = git(repo, "rev-parse", "HEAD").strip()
    commit = next(run for run in runs.values() if run["id"] == head)
    assert set(commit["refs"]) == {"main", "v1", HOSTILE_BRANCH}
    assert [runs[name]["status"] for name in QUEUED] == ["queued", "queued"]
    assert runs["broken"]["status"] == "failed" and runs["broken"]["metrics"] == {}
    for name in FULL:  # a whole run: its own metrics, figures and explorer
        assert runs[name]["metrics"]["test.loss"] > 0 and runs[name]["explorer"] and len(runs[name]["figures"]) >= 6
    for name in PARTIAL:  # `dvc exp run … train`: its curves, but no evaluation, figure or explorer of its own
        run = runs[name]
        assert run["curves"]["test_loss"] and "test.loss" not in run["metrics"] and run["figures"] == {}
        assert "metrics/eval.json" in run["stale"] and "earlier run" in run["explorer_missing"]
        assert run["metrics"]["train.loss"] > 0
    assert runs[HOSTILE_EXPERIMENT]["params"]["data.mirror"] == HOSTILE_VALUE


def test_no_checkout_and_nothing_run(repo, built):
    """The page is the one new thing: HEAD, the workspace's params and lock, and the experiments as they were."""
    assert CHANGED == []  # compare/ is git-ignored, as the project's .gitignore has it
    assert yaml.safe_load((repo / "params.yaml").read_text())["beta"] == 1


def test_sort_filter_and_ranges(page):
    assert page.errors == []
    assert len(row_names(page)) == len(page.evaluate("COMPARE.runs"))
    page.click('#table th[data-sort="params:beta"]')
    betas = [float(value) for value in column(page, "params:beta")]
    assert betas == sorted(betas)
    page.click('#table th[data-sort="params:beta"]')
    assert [float(value) for value in column(page, "params:beta")] == sorted(betas, reverse=True)
    page.fill("#filter", "lr-")
    assert sorted(row_names(page)) == sorted(PARTIAL)
    page.fill("#filter", "")
    page.fill('input[data-range="params:beta:min"]', "3")
    page.dispatch_event('input[data-range="params:beta:min"]', "change")
    assert sorted(row_names(page)) == sorted(["beta-4", "sweep-8", "sweep-16"])
    page.click("#clearFilters")
    assert len(row_names(page)) == len(page.evaluate("COMPARE.runs"))
    assert page.outside == []


def test_hostile_names_and_values_stay_text(page):
    assert page.title() == "vaepipe: every experiment"
    assert page.locator("#table img, #table b, #figures b, #pcp img").count() == 0
    assert HOSTILE_EXPERIMENT in row_names(page)
    page.check("#hideConstant")
    cells = page.locator('#table td[data-column="params:data.mirror"]').all_text_contents()
    assert HOSTILE_VALUE in cells
    assert page.evaluate("document.title") == "vaepipe: every experiment" and page.errors == []


def test_a_brush_on_the_parallel_coordinates_narrows_the_table(page):
    axis = page.locator('#pcp g.pcp-axis[data-column="params:train.lr"] rect.grip')
    box = axis.bounding_box()
    # the top fifth of the lr axis: the largest rates only
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.25, steps=5)
    page.mouse.up()
    lrs = [float(value) for value in column(page, "params:train.lr")]
    assert lrs and all(lr >= 0.005 for lr in lrs), lrs
    assert sorted(row_names(page)) == ["lr-4", "lr-5"]
    box = axis.bounding_box()  # the table above it shrank: the axis moved up
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # a click releases the axis
    assert len(row_names(page)) == len(page.evaluate("COMPARE.runs"))


def test_scatter_curves_and_figures(page):
    page.select_option("#scatterX", "metrics:test.kl")
    page.select_option("#scatterY", "metrics:test.recon")
    with_both = page.evaluate("COMPARE.runs.filter(r => 'test.kl' in r.metrics && 'test.recon' in r.metrics).length")
    assert with_both >= 3 and page.locator("#scatter circle.point").count() == with_both
    page.select_option("#curve", "test_loss")
    assert page.locator("#curves polyline.curve").count() >= 8
    page.select_option("#figure", "samples")
    figures = page.locator("#figures figure")
    selected = page.evaluate("comparePage.state.selected.size")
    assert figures.count() == selected >= 8
    loaded = page.evaluate("[...document.querySelectorAll('#figures img')]"
                           ".filter(image => image.complete && image.naturalWidth > 0).length")
    assert loaded >= 3  # the commit's and the two whole experiments'
    names = [run["name"] for run in page.evaluate("COMPARE.runs")]
    shown = {names[int(figure.get_attribute("data-run"))]: figure.text_content() for figure in figures.all()}
    assert all("stale" in shown[name] for name in PARTIAL), shown
    page.select_option("#figure", "projection points")
    assert page.is_visible("#epoch")
    page.fill("#epoch", "0")
    page.dispatch_event("#epoch", "input")
    first = page.locator("#figures canvas.points").count()
    assert first >= 3
    assert page.text_content("#epochValue") == "0"
    assert page.outside == [] and page.errors == []


def test_csv_holds_the_rows_shown(page, tmp_path):
    page.fill("#filter", "beta-")
    with page.expect_download() as download:
        page.click("#csv")
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert [row[0] for row in rows[1:]] == row_names(page) and sorted(row_names(page)) == sorted(FULL)


def test_an_explorer_opens_from_its_row(page, built):
    link = page.locator('#table tbody tr:has(.run-name:text-is("beta-4")) a.explorer-link')
    with page.context.expect_page() as opened:
        link.click()
    explorer = opened.value
    explorer.wait_for_load_state()
    explorer.evaluate("explorer.ready")
    assert explorer.title() and "Latent-space explorer" in explorer.text_content("h1")
    explorer.close()
    assert page.outside == []


def test_the_page_opens_as_a_file_with_no_request_outside(browser, built):
    page = browser.new_page()
    outside, errors = [], []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file://", "data:"))
               else (outside.append(route.request.url), route.abort()))
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto((built / "index.html").as_uri())
        page.wait_for_function("window.comparePage !== undefined")
        assert page.locator("#table tbody tr").count() == len(runs_of(built))
    finally:
        page.close()
    assert outside == [] and errors == []


def test_outside_a_project_one_line_and_no_page(tmp_path):
    env = stage_env()
    result = subprocess.run([sys.executable, "-m", "vaepipe.compare.build"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not a DVC project" in result.stderr
    assert not (tmp_path / "compare").exists()
