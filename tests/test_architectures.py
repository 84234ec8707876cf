"""Architectures in one place (vaepipe.model.architectures): the convolutional VAE, and one this
test defines itself and registers the documented way (a function in the temporary
repository's architectures.py, named in ARCHITECTURES), each through the whole pipeline to
the explorer: trained by autograd, every figure, the ONNX files checked against PyTorch,
and the page (onnxruntime-web, served from 127.0.0.1) decoding a slider move within 1/255
of PyTorch in Chromium. Bad names and sides are one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from support import CHECK_ONNX, ROOT, Mirror, dvc, explorer_page, in_repo, make_repo, write_dataset
from vaepipe.model.vae import built

pytestmark = pytest.mark.e2e

# the test's own architecture: a strided convolution, a LayerNorm and tanh before the code,
# and a decoder of two linear layers; registered as the module's docstring says, with an
# option of its own (`width`), declared there and nowhere else
TINY = '''

def tiny(d, channels, side, hidden, activation, *, width: Annotated[int, number(minimum=1, maximum=64)] = 6):
    """A test's architecture: conv 3×3 stride 2, LayerNorm, linear; decoder linear, tanh, linear."""
    features = width * ((side + 1) // 2) ** 2
    encoder = [nn.Unflatten(1, (channels, side, side)), nn.Conv2d(channels, width, 3, stride=2, padding=1),
               nn.Tanh(), nn.Flatten(), nn.LayerNorm(features), nn.Linear(features, 2 * d)]
    decoder = [nn.Linear(d, 48), nn.Tanh(), nn.Linear(48, channels * side * side)]
    return encoder, decoder, [width]


ARCHITECTURES["tiny"] = tiny
'''

OPTIONS = {"conv": {}, "tiny": {"width": 5}}  # what each run sets in params.yaml's arch_options
RESOLVED = {"conv": {"norm": "batch", "groups": 8}, "tiny": {"width": 5}}  # with the defaults
STAGES = ("download", "normalize", "train", "classifier", "evaluate", "latent", "generate", "project", "export",
          "explore")


@pytest.fixture(scope="module", params=["conv", "tiny"])
def repo(request, tmp_path_factory):
    if not (ROOT / "node_modules" / "onnxruntime-web").exists():
        pytest.skip("onnxruntime-web is not installed: `make install` runs npm ci (.ci/run installs npm)")
    mirror = Mirror(write_dataset(tmp_path_factory.mktemp("mirror")))
    folder = make_repo(tmp_path_factory.mktemp(f"repo-{request.param}"), mirror.url, d=4, arch=request.param,
                       arch_options=OPTIONS[request.param])
    if request.param == "tiny":
        registry = folder / "src" / "vaepipe" / "model" / "architectures.py"
        registry.write_text(registry.read_text() + TINY)
    (folder / "node_modules").symlink_to(ROOT / "node_modules")  # `make install`'s npm ci, lent
    result = dvc(folder, "repro")
    yield folder, result.stdout + result.stderr
    mirror.close()


def test_every_stage_runs_and_the_model_is_trained_by_autograd(repo):
    folder, log = repo
    for stage in STAGES:
        assert f"Running stage '{stage}'" in log, stage
    arch = json.loads(in_repo(folder, "import json; from vaepipe.model.vae import load_model; "
                                      "from vaepipe.training.backprop import written_out; "
                                      "m, h = load_model('models/model.pt'); "
                                      "print(json.dumps([h['arch'], written_out(m)]))"))
    assert arch[0] in ("conv", "tiny") and arch[1] is False  # no written-out backward: autograd
    rows = (folder / "plots" / "training.csv").read_text().splitlines()
    losses = [float(row.split(",")[rows[0].split(",").index("test_loss")]) for row in rows[1:]]
    assert losses[-1] < losses[0]  # it learned
    for figure in ("samples", "reconstructions", "morph", "traversals", "manifold", "gmm_samples", "projection"):
        assert (folder / "plots" / f"{figure}.png").stat().st_size > 1000, figure
    for name in ("encoder", "decoder"):
        assert (folder / "models" / "onnx" / f"{name}.onnx").exists()
    # the stage checked both files against PyTorch; the check fails on another model's file
    in_repo(folder, CHECK_ONNX + "print(check_files())")


def test_an_architectures_own_options_reach_the_model_its_files_and_the_page(repo):
    """Declared once, as the builder's keyword (the tiny one's `width` lives only in the test's
    copy of the registry): set in params.yaml, built into the model, saved with its weights,
    carried by the ONNX files and shown by the explorer."""
    folder, _ = repo
    arch = json.loads(in_repo(folder, "import json; from vaepipe.model.vae import load_model; "
                                      "m, h = load_model('models/model.pt'); "
                                      "print(json.dumps([h['arch'], h['arch_options'], m.encoder[1].out_channels]))"))
    name, saved, channels = arch
    assert saved == RESOLVED[name]
    assert channels == (5 if name == "tiny" else 32)
    metadata = json.loads(in_repo(folder, "import json; from vaepipe.explorer.build import onnx_metadata; "
                                          "print(onnx_metadata('models/onnx/decoder.onnx')['arch_options'])"))
    assert metadata == RESOLVED[name]
    shown = json.loads((folder / "explorer" / "run.json").read_text())["params"]
    assert {key: value for key, value in shown.items() if key.startswith("arch_options.")} == \
        {f"arch_options.{key}": value for key, value in RESOLVED[name].items()}


def test_the_page_decodes_a_slider_move_as_torch_does(repo, browser):
    folder, _ = repo
    explorer = folder / "explorer"
    assert {"ort.wasm.min.js", "encoder.onnx", "decoder.onnx"} <= {path.name for path in explorer.iterdir()}
    with explorer_page(browser, explorer) as page:
        page.locator("#sliders input").nth(0).fill("1.5")
        page.evaluate("explorer.decode(explorer.z)")  # the slider's own decode has been drawn after this one
        z = page.evaluate("Array.from(explorer.z)")
        drawn = np.array(page.evaluate("""Array.from(document.getElementById('out').getContext('2d')
                                          .getImageData(0, 0, 28, 28).data)""")).reshape(28, 28, 4)[:, :, 0]
        assert page.errors == [] and all(request.startswith(page.served) for request in page.requests), page.requests
    assert z[json.loads((explorer / "run.json").read_text())["dims"][0]["dim"]] == 1.5
    expected = np.array(json.loads(in_repo(folder, f"""import json, torch
from vaepipe.model.vae import load_model
model, _ = load_model('models/model.pt')
print(json.dumps(model.decode(torch.tensor([{z}], dtype=torch.float32))[0].tolist()))""")))
    assert np.abs(drawn - expected.reshape(28, 28) * 255).max() <= 1.0  # every pixel within 1/255


def test_an_architecture_that_does_not_exist_is_one_line_naming_those_that_do(tmp_path):
    mirror = Mirror(write_dataset(tmp_path / "mirror"))
    try:
        folder = make_repo(tmp_path / "repo", mirror.url, arch="cnov")
        result = dvc(folder, "repro", "train", check=False)
    finally:
        mirror.close()
    log = result.stdout + result.stderr
    assert result.returncode != 0 and "exited with 2" in log, log
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert errors == ["error: arch: 'cnov' is not an architecture of this code; there are mlp, conv "
                      "(vaepipe/model/architectures.py)"]
    assert not (folder / "models").exists()


@pytest.mark.parametrize("options, message", [
    ({"norm": "layer"}, "arch_options.norm: must be one of batch, group, none, got 'layer'"),
    ({"nrom": "none"}, "arch_options.nrom: not an option of arch conv; its options are norm, groups "
                       "(vaepipe/model/architectures.py)"),
    ({"groups": 0}, "arch_options.groups: must be an integer >= 1 and <= 512, got 0")])
def test_a_bad_option_is_one_line_and_exit_2(tmp_path, options, message):
    mirror = Mirror(write_dataset(tmp_path / "mirror"))
    try:
        folder = make_repo(tmp_path / "repo", mirror.url, arch="conv", arch_options=options)
        result = dvc(folder, "repro", "train", check=False)
    finally:
        mirror.close()
    log = result.stdout + result.stderr
    assert result.returncode != 0 and "exited with 2" in log, log
    assert [line for line in log.splitlines() if line.startswith("error:")] == [f"error: {message}"]
    assert not (folder / "models").exists()


@pytest.mark.parametrize("side", [6, 7, 30 + 1])
def test_a_side_the_conv_network_cannot_take_is_one_line(side):
    with pytest.raises(Exception) as caught:
        built(4, True, "bernoulli", side * side, None, "relu", "conv", device="meta")
    assert caught.value.exit_code == 2
    assert str(caught.value) == (f"data.side {side}: the conv network halves the side at least once and keeps it at "
                                 "4 or more; it takes even sides from 8 (8, 16, 28, 32, 64, …)")


def test_a_checkpoint_of_an_architecture_this_code_lacks_is_one_line(tmp_path):
    import torch

    from vaepipe.model.vae import load_model, save_model

    save_model(tmp_path / "model.pt", built(4, True, "bernoulli", 784, None, "relu", "conv"), {"beta": 1.0})
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    saved["hparams"]["arch"] = "capsule"
    torch.save(saved, tmp_path / "other.pt")
    with pytest.raises(Exception) as caught:
        load_model(tmp_path / "other.pt")
    assert caught.value.exit_code == 2
    assert str(caught.value) == (f"{tmp_path / 'other.pt'}: its architecture 'capsule' is not one of this code's "
                                 "(mlp, conv): use the code that trained it, or run `dvc repro train --force`")
    model, hparams = load_model(tmp_path / "model.pt")  # its own architecture loads
    assert hparams["arch"] == "conv" and hparams["hidden"] == [32, 64] and not model.training
