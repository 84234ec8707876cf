"""The explorer in a real browser: Debian's Chromium, driven by Playwright's Python package
(no browser download), on the page the explore stage wrote for a real run, served from
127.0.0.1. The page must do what torch does: every decoded pixel within 1/255, the drawn
digit's μ within 1e-4. Also: the ONNX check fails on a tampered file, and the model loads
with `vaepipe.api.load`, also from a second clone through `dvc artifacts get`."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from support import BIN, CHECK_ONNX, Mirror, dvc, git, make_repo, run_stage, serving, stage_env, write_dataset

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A small run made here; or, with $VAEPIPE_EXPLORER_REPO, a project that already ran
    `dvc repro explore` (e.g. the run of record), to check and picture its page."""
    if os.environ.get("VAEPIPE_EXPLORER_REPO"):
        yield Path(os.environ["VAEPIPE_EXPLORER_REPO"]).resolve()
        return
    mirror = Mirror(write_dataset(tmp_path_factory.mktemp("mirror")))
    folder = make_repo(tmp_path_factory.mktemp("repo"), mirror.url, d=6)
    dvc(folder, "repro", "explore")
    yield folder
    mirror.close()


@pytest.fixture(scope="module")
def served(repo):
    with serving(repo / "explorer") as url:
        yield url


@pytest.fixture(scope="module")
def page(browser, served):
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    page.requests, page.errors = [], []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(served)
    page.evaluate("explorer.ready")
    yield page
    page.close()


def torch_model(repo):
    from vaepipe.api import load
    return load(repo / "models/model.pt")


def canvas_grey(page, canvas_id: str, x0: int = 0, width: int = 28) -> np.ndarray:
    data = page.evaluate(f"""Array.from(document.getElementById('{canvas_id}').getContext('2d')
                            .getImageData({x0}, 0, {width}, 28).data)""")
    return np.array(data, dtype=np.float64).reshape(28, width, 4)[:, :, 0]


def test_page_loads_without_errors_or_outside_requests(page, served, repo, report):
    assert page.errors == []
    # the first view: samples, and the first test image beside its reconstruction, before any click
    assert page.evaluate("explorer.picked") == 0 and page.evaluate("Array.from(explorer.z)") == [0] * 6
    for canvas, width in (("samples", 112), ("picked", 28), ("pickedRecon", 28)):
        assert canvas_grey(page, canvas, 0, width).std() > 0, f"{canvas} is blank at load"
    assert page.requests and all(url.startswith(served) for url in page.requests), page.requests
    ready = page.evaluate("explorer.readyMs")
    report(f"page ready {ready:.0f} ms after navigation (a local server)")
    text = page.inner_text("#run")
    run = page.evaluate("explorer.run")
    assert run == json.loads((repo / "explorer/run.json").read_text())
    assert "beta=" in text and "test.loss" in text and f"d={run['d']}" in text
    assert f"{run['metrics']['test.loss']:.4g}" in text


def test_the_map_names_its_projection_method(page, repo):
    method = yaml.safe_load((repo / "params.yaml").read_text())["project"]["method"]
    assert page.inner_text("#mapkind").startswith(f"({method} of epoch ")


def test_metrics_and_class_names_are_shown_as_text_never_markup(repo, browser, tmp_path):
    """The run line and the map's legend are built from text nodes: a metric or a class
    folder's name holding markup shows as written and makes no element."""
    folder = shutil.copytree(repo / "explorer", tmp_path / "explorer")
    run = json.loads((folder / "run.json").read_text())
    hostile = {"metric": '<b id="injected">x</b>', "class": "b\"q'&amp;", "tag": '<i id="tagged">c</i>'}
    run["metrics"]["test.likelihood"] = hostile["metric"]
    run["classes"][:2] = [hostile["class"], hostile["tag"]]
    (folder / "run.json").write_text(json.dumps(run))
    page = browser.new_page()
    try:
        with serving(folder) as url:
            page.goto(url)
            page.evaluate("explorer.ready")
            assert page.evaluate("document.querySelectorAll('#injected, #tagged').length") == 0
            assert hostile["metric"] in page.inner_text("#run")
            legend = page.inner_text("#legend")
            assert hostile["class"] in legend and hostile["tag"] in legend, legend
    finally:
        page.close()


def test_sliders_are_sorted_by_kl_and_decode_what_torch_decodes(page, repo, report):
    run = page.evaluate("explorer.run")
    kls = [dim["kl"] for dim in run["dims"]]
    assert kls == sorted(kls, reverse=True) and len(kls) == run["d"]
    order = page.eval_on_selector_all("#sliders input", "inputs => inputs.map(i => Number(i.dataset.dim))")
    assert order == [dim["dim"] for dim in run["dims"]]
    model = torch_model(repo)
    times = []
    for step, value in enumerate(["1.5", "-2.25", "0.8"]):
        slider = page.locator("#sliders input").nth(step)
        slider.fill(value)
        z = np.array(page.evaluate("Array.from(explorer.z)"))
        assert z[order[step]] == float(value)
        expected = model.decode(torch.tensor(z, dtype=torch.float32)).numpy().reshape(28, 28) * 255
        assert np.abs(canvas_grey(page, "out") - expected).max() <= 1.0  # every pixel within 1/255
    times = page.evaluate("""() => {
        const input = document.querySelector('#sliders input'), times = [];
        for (let k = 0; k < 200; k++) {
            const start = performance.now();
            input.value = String(-3 + 6 * k / 199);
            input.dispatchEvent(new Event('input'));
            times.push(performance.now() - start);
        }
        return times; }""")
    report(f"one slider move (decode + redraw): median {statistics.median(times):.3f} ms, "
           f"95th percentile {sorted(times)[189]:.3f} ms over 200 moves")


def test_a_drawn_digit_is_encoded_as_torch_encodes_it(page, repo):
    box = page.locator("#draw").bounding_box()
    page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.2 * box["height"])
    page.mouse.down()
    for k in range(1, 21):
        page.mouse.move(box["x"] + (0.3 + 0.02 * k) * box["width"], box["y"] + (0.2 + 0.03 * k) * box["height"])
    page.mouse.up()
    drawn = np.array(page.evaluate("Array.from(explorer.drawn)"))
    assert drawn.sum() > 10  # the stroke left ink
    mu_page = np.array(page.evaluate("Array.from(explorer.drawnMu)"))
    mu_torch = torch_model(repo).encode(torch.tensor(drawn, dtype=torch.float32))[0].numpy()[0]
    assert np.abs(mu_page - mu_torch).max() <= 1e-4
    assert np.array_equal(np.array(page.evaluate("Array.from(explorer.z)")), mu_page)  # the sliders hold it
    assert len(page.evaluate("explorer.nearest")) == 5


def test_clicking_a_map_point_shows_that_test_image(page, repo):
    index = 7
    x, y = page.evaluate(f"explorer.pointPosition({index})")
    box = page.locator("#map").bounding_box()
    size = page.evaluate("document.getElementById('map').width")
    page.mouse.click(box["x"] + x * box["width"] / size, box["y"] + y * box["height"] / size)
    picked = page.evaluate("explorer.picked")
    images = np.frombuffer((repo / "explorer/images.bin").read_bytes(), dtype=np.uint8).reshape(-1, 28, 28)
    assert np.array_equal(canvas_grey(page, "picked"), images[picked].astype(np.float64))
    mus = np.frombuffer((repo / "explorer/mu.bin").read_bytes(), dtype="<f4").reshape(len(images), -1)
    assert np.allclose(np.array(page.evaluate("Array.from(explorer.z)")), mus[picked])
    assert picked == index or np.hypot(*(np.array(page.evaluate(f"explorer.pointPosition({picked})")) - (x, y))) < 8


def test_morph_and_both_sample_buttons_draw(page):
    assert canvas_grey(page, "morph", 0, 280).std() > 0
    before = page.evaluate("Array.from(explorer.z)")
    for button in ("#prior", "#mixture"):
        page.click(button)
        samples = canvas_grey(page, "samples", 0, 112)
        assert samples.std() > 0
        assert page.evaluate("Array.from(explorer.z)") != before
        before = page.evaluate("Array.from(explorer.z)")
    page.click("#setA")
    page.click("#prior")
    page.click("#setB")
    page.locator("#t").fill("0.5")
    page.click("#mixture")
    assert canvas_grey(page, "morph", 0, 280).std() > 0
    assert page.errors == []
    shot = os.environ.get("VAEPIPE_SCREENSHOT")
    if shot:  # README's picture: VAEPIPE_SCREENSHOT=docs/explorer.png pytest tests/test_explorer.py
        page.screenshot(path=shot, full_page=True)


def test_tampered_onnx_fails_the_check_in_one_line(repo, tmp_path):
    import onnx
    from onnx import numpy_helper

    copy = tmp_path / "repo"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".dvc"))
    decoder = onnx.load(str(copy / "models/onnx/decoder.onnx"))
    first = decoder.graph.initializer[0]
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) * 1.01, first.name))
    onnx.save(decoder, str(copy / "models/onnx/decoder.onnx"))
    script = CHECK_ONNX + "from vaepipe.stage import run_stage\nrun_stage(lambda params: check_files())"
    result = subprocess.run([str(BIN / "python"), "-c", script], cwd=copy, env=stage_env(), capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("error: decoder.onnx: differs from the PyTorch model")
    assert result.stderr.count("\n") == 1


def test_the_explore_stage_runs_without_torch_and_writes_the_same_page(repo, tmp_path):
    """It reads the codes and the test images as arrays (vaepipe.data.tensorfile): no PyTorch import."""
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".dvc", "explorer"))
    result = run_stage("explore", copy, without="torch")
    assert result.returncode == 0, result.stderr
    written = sorted(path.relative_to(repo) for path in (repo / "explorer").rglob("*") if path.is_file())
    assert written == sorted(path.relative_to(copy) for path in (copy / "explorer").rglob("*") if path.is_file())
    for name in written:
        assert (copy / name).read_bytes() == (repo / name).read_bytes(), name


def test_the_model_loads_from_a_second_clone_with_dvc_artifacts_get(repo, tmp_path):
    if os.environ.get("VAEPIPE_EXPLORER_REPO"):
        pytest.skip("commits to the repository: runs on the test's own run only")
    remote, bare = tmp_path / "dvc-remote", tmp_path / "origin.git"
    dvc(repo, "remote", "add", "-d", "-f", "team", str(remote))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a run with its explorer")
    git(repo, "tag", "-a", "vae@v1.0.0", "-m", "Registering artifact vae version v1.0.0")  # GTO's version tag
    dvc(repo, "push")
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    out = tmp_path / "elsewhere"
    out.mkdir()
    dvc(out, "artifacts", "get", str(bare), "vae", "-o", "vae.pt")  # the newest version
    dvc(out, "get", str(bare), "models/model.pt", "-o", "by-path.pt")  # any revision, by path
    from vaepipe.api import load
    vae, original = load(out / "vae.pt"), torch_model(repo)
    assert (out / "vae.pt").read_bytes() == (repo / "models/model.pt").read_bytes() == (out / "by-path.pt").read_bytes()
    x = torch.rand(5, 784, generator=torch.Generator().manual_seed(0))
    assert torch.equal(vae.encode(x)[0], original.encode(x)[0])
    assert torch.equal(vae.sample(4, seed=3), original.sample(4, seed=3)) and vae.sample(4, seed=3).shape == (4, 784)


@pytest.mark.parametrize("variational", [True, False], ids=["vae", "ae"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli", "gaussian"])
@pytest.mark.parametrize("d", [1, 2, 20])
def test_every_model_exports_and_passes_its_check(tmp_path, variational, likelihood, d):
    """Every model the pipeline trains: its two ONNX files agree with torch within 1e-5,
    byte-identical when written twice, the decoder giving the distribution's mean."""
    import onnxruntime
    from vaepipe.model.export import TOLERANCE, export
    from vaepipe.model.vae import VAE

    torch.manual_seed(d)
    model = VAE(d, variational, likelihood).eval()
    with torch.no_grad():  # logits spread over both branches of the continuous Bernoulli's mean
        model.decoder[2].bias.normal_(0, 2)
    worst = export(model, tmp_path / "onnx", {"binarize": "none"})
    assert max(worst.values()) <= TOLERANCE
    first = (tmp_path / "onnx/decoder.onnx").read_bytes()
    export(model, tmp_path / "onnx", {"binarize": "none"})
    assert (tmp_path / "onnx/decoder.onnx").read_bytes() == first
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx/decoder.onnx"), providers=["CPUExecutionProvider"])
    z = torch.randn(3, d)
    (got,) = session.run(None, {"z": z.numpy()})
    assert np.abs(got - model.decode(z).detach().numpy()).max() <= TOLERANCE
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["likelihood"] == likelihood and meta["d"] == str(d)


def test_a_deeper_tanh_model_runs_in_the_page_as_in_torch(repo, browser, tmp_path):
    """Burda et al.'s shape of model (two tanh layers each side): the page's decoder and
    encoder follow the exported layers, however many."""
    if os.environ.get("VAEPIPE_EXPLORER_REPO"):
        pytest.skip("trains an experiment: only in a repository the test made")
    dvc(repo, "exp", "run", "-S", "hidden=[24,12]", "-S", "activation=tanh")
    run = json.loads((repo / "explorer/run.json").read_text())
    assert run["activation"] == "tanh" and len(run["layers"]["decoder"]) == 6
    model = torch_model(repo)
    page = browser.new_page()
    with serving(repo / "explorer") as url:
        page.goto(url)
        page.evaluate("explorer.ready")
        z = np.linspace(-2, 2, run["d"])
        decoded = np.array(page.evaluate(f"Array.from(explorer.decode(Float64Array.from({z.tolist()})))"))
        x = torch.rand(1, 784, generator=torch.Generator().manual_seed(4))
        mu = np.array(page.evaluate(f"Array.from(explorer.encode(Float64Array.from({x[0].tolist()})).mu)"))
    page.close()
    assert np.abs(decoded - model.decode(torch.tensor(z, dtype=torch.float32)).numpy()).max() < 1e-5
    assert np.abs(mu - model.encode(x)[0].detach().numpy()).max() < 1e-4
