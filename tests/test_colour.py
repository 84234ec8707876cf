"""Colour pictures end to end: a folder of digits tinted with random foreground and
background colours, at side 32, through every stage with `data.channels: 3` and
`arch: conv`: reconstructions keep each picture's colours, the figures are in colour, and
the explorer encodes a picture given to it and draws in colour in Chromium, within 1/255
of PyTorch. Colour with IDX data is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import ROOT, dvc, explorer_page, in_repo, make_repo, run_stage, set_params, synthetic_digits

pytestmark = pytest.mark.e2e

SIDE = 32
STAGES = ("normalize", "train", "classifier", "evaluate", "latent", "generate", "project", "export", "explore")


def tinted(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey digits [N, h, w] as RGB [N, h, w, 3]: ink in one random colour on another."""
    ink, ground = (rng.integers(0, 256, (len(images), 1, 1, 3)) for _ in range(2))
    alpha = images[..., None] / 255
    return np.rint(ground * (1 - alpha) + ink * alpha).astype(np.uint8)


def tinted_folder(root: Path) -> Path:
    """train/ and test/, one folder per label, each digit a 28 × 28 colour PNG."""
    rng = np.random.default_rng(11)
    for split, n, seed in (("train", 2000, 0), ("test", 200, 1)):
        images, labels = synthetic_digits(n, seed)
        for i, (picture, label) in enumerate(zip(tinted(images, rng), labels)):
            where = root / split / str(label)
            where.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(where / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    if not (ROOT / "node_modules" / "onnxruntime-web").exists():
        pytest.skip("onnxruntime-web is not installed: `make install` runs npm ci (.ci/run installs npm)")
    images = tinted_folder(tmp_path_factory.mktemp("tinted"))
    folder = make_repo(tmp_path_factory.mktemp("repo"), None, dataset="folder", data__path=str(images),
                       data__side=SIDE, data__channels=3, arch="conv", d=8, epochs=25,
                       train__batch_size=32)  # enough steps to learn the colours well
    (folder / "node_modules").symlink_to(ROOT / "node_modules")  # `make install`'s npm ci, lent
    result = dvc(folder, "repro")
    return folder, result.stdout + result.stderr, images


def colourful(path: Path) -> float:
    """The share of a PNG's pixels whose red, green and blue differ: 0 for a grey figure."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return float(((rgb[..., 0] != rgb[..., 1]) | (rgb[..., 1] != rgb[..., 2])).mean())


def test_every_stage_runs_on_colour_and_the_figures_are_in_colour(repo):
    folder, log, _ = repo
    for stage in STAGES:
        assert f"Running stage '{stage}'" in log, stage
    stored = json.loads(in_repo(folder, "import json; from vaepipe.data.splits import load_split\n"
                                        "x, y = load_split('data/normalized/train.pt')\n"
                                        "print(json.dumps([str(x.dtype), list(x.shape)]))"))
    assert stored == ["torch.uint8", [2000, 3 * SIDE * SIDE]]  # a byte a sub-pixel, planes side by side
    for figure in ("samples", "reconstructions", "morph", "traversals", "manifold", "gmm_samples"):
        assert colourful(folder / "plots" / f"{figure}.png") > 0.05, figure
    evaluation = json.loads((folder / "metrics" / "eval.json").read_text())["test"]
    # bits per dimension over every sub-pixel: 3 · 32² of them
    assert evaluation["bits_per_dim"] == pytest.approx(evaluation["discrete_nll"] / (3 * SIDE * SIDE * np.log(2)))


def test_reconstructions_keep_each_pictures_colours(repo):
    folder, _, _ = repo
    means = np.array(json.loads(in_repo(folder, """import json, torch
from vaepipe.data.splits import load_split, unit
from vaepipe.model.vae import load_model
model, _ = load_model('models/model.pt')
x = unit(load_split('data/normalized/test.pt')[0])
with torch.no_grad():
    recon = model.decode(model.encode(x)[0])
print(json.dumps([t.view(len(t), 3, -1).mean(-1).tolist() for t in (x, recon)]))""")))
    given, rebuilt = means  # [images, channels]: each picture's mean red, green and blue
    error = np.abs(rebuilt - given).mean()
    against_others = np.abs(rebuilt - np.roll(given, 1, axis=0)).mean()  # another picture's colours
    assert error < 0.05 and error < against_others / 4, (error, against_others)


def test_the_explorer_encodes_a_picture_and_draws_in_colour(repo, browser, tmp_path):
    folder, _, images = repo
    explorer = folder / "explorer"
    run = json.loads((explorer / "run.json").read_text())
    assert (run["channels"], run["side"], run["params"]["arch"]) == (3, SIDE, "conv")
    picture = sorted((images / "test" / "3").glob("*.png"))[0]
    with explorer_page(browser, explorer, viewport={"width": 1400, "height": 1000}) as page:
        assert page.locator("#pictureRow").is_visible() and page.locator("#drawTitle").inner_text() == \
            "Encode a picture"
        page.set_input_files("#picture", str(picture))  # as a user picks it from disk
        page.wait_for_function("explorer.drawnRecon !== undefined")
        given = page.evaluate("Array.from(explorer.drawn)")
        mu = page.evaluate("Array.from(explorer.drawnMu)")
        recon = page.evaluate("Array.from(explorer.drawnRecon)")
        shown = np.array(page.evaluate(f"""Array.from(document.getElementById('drawnRecon').getContext('2d')
                                          .getImageData(0, 0, {SIDE}, {SIDE}).data)""")).reshape(SIDE, SIDE, 4)
        page.locator("#sliders input").nth(0).fill("1.5")
        page.evaluate("explorer.decode(explorer.z)")  # the slider's own decode has been drawn after this one
        z = page.evaluate("Array.from(explorer.z)")
        slid = np.array(page.evaluate(f"""Array.from(document.getElementById('out').getContext('2d')
                                          .getImageData(0, 0, {SIDE}, {SIDE}).data)""")).reshape(SIDE, SIDE, 4)
        page.screenshot(path=str(tmp_path / "explorer.png"))
        assert page.errors == [] and all(request.startswith(page.served) for request in page.requests), page.requests
    expected = json.loads(in_repo(folder, f"""import json, torch
from vaepipe.model.vae import load_model
model, _ = load_model('models/model.pt')
with torch.no_grad():
    mu = model.encode(torch.tensor([{given}]))[0]
    slid = model.decode(torch.tensor([{z}]))[0]
    print(json.dumps([mu[0].tolist(), model.decode(mu)[0].tolist(), slid.tolist()]))"""))
    torch_mu, torch_recon, torch_slid = (np.array(values) for values in expected)
    # the picture the page scaled down is the tinted digit: a colour picture, not grey
    planes = np.array(given).reshape(3, SIDE, SIDE)
    assert np.abs(planes[0] - planes[1]).max() > 0.1 or np.abs(planes[1] - planes[2]).max() > 0.1
    assert np.abs(np.array(mu) - torch_mu).max() < 1e-4
    assert np.abs(np.array(recon) - torch_recon).max() < 1e-4
    for drawn, want in ((shown, torch_recon), (slid, torch_slid)):  # planes → the canvas's RGB
        assert np.abs(drawn[..., :3] - want.reshape(3, SIDE, SIDE).transpose(1, 2, 0) * 255).max() <= 1.0


def test_colour_with_idx_data_is_one_line_and_exit_2(workdir):
    set_params(workdir, data__dataset="fashion-mnist", data__channels=3)
    result = run_stage("normalize", workdir)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: data.channels: 3 (colour) is for a folder of images; fashion-mnist is grey: set data.channels "
        "to 1, or data.dataset to folder"]
    assert not (workdir / "data" / "normalized").exists()
