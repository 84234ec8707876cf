"""The notes' figures: grid geometry, the morph's end points, the projection's rows."""

from __future__ import annotations

import csv
import math

import matplotlib.image
import numpy as np
import pytest
import torch

from support import run_stage, set_params, synthetic_digits
from vaepipe.figures.style import LABEL_BAND, TITLE_BAND, grid_size
from vaepipe.layout import DIGITS
from vaepipe.errors import UserError
from vaepipe.figures.generation import generate_figures, morph, morph_ends
from vaepipe.data.idx import read_split
from vaepipe.figures.projection import project_means, projection_rows
from vaepipe.model.vae import VAE
from vaepipe.params import load_params
from vaepipe.training.snapshots import figure_epochs, save_snapshots


def png_shape(path) -> tuple[int, int]:
    return matplotlib.image.imread(path).shape[:2]


def small_test_set(n=120, seed=3):
    images, labels = synthetic_digits(n, seed)
    return torch.from_numpy(images.reshape(n, 784)).float() / 255, torch.from_numpy(labels).long()


def test_generate_writes_every_grid_at_its_size(tmp_path, workdir):
    set_params(workdir, generate__samples=12, generate__reconstructions=7, generate__morph__steps=5)
    options = load_params(workdir / "params.yaml").generate
    torch.manual_seed(0)
    x, labels = small_test_set()
    generate_figures(VAE(d=5).eval(), x, labels, DIGITS, options, seed=1, folder=tmp_path)
    cols = math.ceil(math.sqrt(12))
    expected = {
        "samples": (grid_size(math.ceil(12 / cols), cols), 0),
        "reconstructions": (grid_size(2, 7), LABEL_BAND),
        "morph": (grid_size(2, 5), LABEL_BAND),
    }
    for name, ((height, width), left) in expected.items():
        assert png_shape(tmp_path / f"{name}.png") == (height + TITLE_BAND, width + left), name


def test_morph_runs_from_the_first_3_to_the_first_8_through_their_means():
    torch.manual_seed(0)
    model = VAE(d=5).eval()
    x, labels = small_test_set()
    (i, j), title = morph_ends(labels, DIGITS, 3, 8)
    assert labels[i] == 3 and labels[j] == 8 and title == "Morphing the test set's first 3 into its first 8"
    assert 3 not in labels[:i].tolist() and 8 not in labels[:j].tolist()
    latent, pixels = morph(model, x[i], x[j], steps=6)
    mu, _ = model.encode(torch.stack([x[i], x[j]]))
    with torch.no_grad():
        torch.testing.assert_close(latent[0], model.decode(mu[0]))
        torch.testing.assert_close(latent[-1], model.decode(mu[1]))
    torch.testing.assert_close(pixels[0], x[i])
    torch.testing.assert_close(pixels[-1], x[j])
    assert latent.shape == pixels.shape == (6, 784)


def test_morph_pair_on_real_mnist_digits(mnist):
    labels = torch.from_numpy(read_split(mnist, "test")[1])
    (i, j), _ = morph_ends(labels, DIGITS, 3, 8)
    assert (i, labels[i].item(), labels[j].item()) == (18, 3, 8)


def test_morph_ends_of_named_classes_and_of_unlabelled_images():
    labels = torch.tensor([1, 0, 2, 1])
    first_dog_to_owl = ((0, 2), "Morphing the test set's first dog into its first owl")
    assert morph_ends(labels, ["cat", "dog", "owl"], 1, 2) == first_dog_to_owl
    assert morph_ends(torch.full((5,), -1), [], 4, 0) == ((4, 0), "Morphing test image 4 into test image 0")
    assert morph_ends(labels, ["cat", "dog", "owl"], 3, 8)[0] == (1, 2)  # wrapped: classes 0 and 2
    with pytest.raises(UserError, match="no image labelled 1; choose labels it holds .0 to 2: cat, dog, owl"):
        morph_ends(torch.tensor([0, 2]), ["cat", "dog", "owl"], 1, 0)
    with pytest.raises(UserError, match="the test set has 5 images; choose start and end below 5"):
        morph_ends(torch.full((5,), -1), [], 5, 0)


def test_project_stage_writes_rows_for_every_snapshot_epoch(workdir):
    set_params(workdir, project__epochs=[0, 2, 3], project__points=50, epochs=3)
    codes = {epoch: (torch.randn(80, 6), torch.randn(80, 6)) for epoch in range(4)}
    save_snapshots(workdir / "models/snapshots", codes, torch.arange(80) % 10)
    result = run_stage("project", workdir, without="torch")  # it reads the snapshots as arrays
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((workdir / "plots/projection.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0] * 50 + [2] * 50 + [3] * 50
    assert [int(r["label"]) for r in rows[:12]] == list(range(10)) + [0, 1]
    height, width = png_shape(workdir / "plots/projection.png")
    assert width > 2.5 * height  # three panels side by side


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_the_fits_at_once_give_each_fit_alone(method):
    """The epochs' fits share the cores in threads: each must come out as it does when
    fitted alone on one thread (no state shared between fits, none lost to the threads)."""
    rng = np.random.default_rng(4)
    snapshots = {epoch: {"mu": rng.standard_normal((120, 5), dtype=np.float32), "labels": np.arange(120) % 10}
                 for epoch in (0, 3, 7)}
    rows = projection_rows(snapshots, points=100, method=method, seed=1)
    for epoch, snapshot in snapshots.items():
        alone = project_means(snapshot["mu"][:100].astype(np.float64), method, 1, threads=1)
        assert [(r["x"], r["y"]) for r in rows if r["epoch"] == epoch] == [tuple(p) for p in alone.tolist()]


def test_d_2_plots_mu_itself():
    mu = np.random.default_rng(0).standard_normal((30, 2), dtype=np.float32)  # as load_snapshot reads them
    snapshots = {0: {"mu": mu, "logvar": np.zeros((30, 2), np.float32), "labels": np.arange(30) % 10}}
    rows = projection_rows(snapshots, points=30, method="tsne", seed=0)
    assert [(r["x"], r["y"]) for r in rows] == [tuple(p) for p in mu.astype(np.float64).tolist()]


def test_figure_epochs_past_the_run_are_dropped_and_the_last_is_shown(workdir):
    set_params(workdir, epochs=3, project__epochs=[0, 2, 5, 10], project__points=9)
    codes = {epoch: (torch.randn(9, 2), torch.randn(9, 2)) for epoch in range(4)}
    save_snapshots(workdir / "models/snapshots", codes, torch.arange(9))
    result = run_stage("project", workdir)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("note: project.epochs [5, 10] are past the last training epoch (3); "
                             "showing [0, 2, 3]\n")
    epochs = {int(line.split(",")[0]) for line in (workdir / "plots/projection.csv").read_text().splitlines()[1:]}
    assert epochs == {0, 2, 3}


def test_figure_epochs_always_end_with_the_last():
    every = list(range(11))
    assert figure_epochs([0, 5, 10], every) == [0, 5, 10]
    assert figure_epochs([0, 1], every) == [0, 1, 10]
    assert figure_epochs([20], [0, 1, 2, 3]) == [3]
    assert figure_epochs([0, 5, 10], [0, 4, 8, 11]) == [0, 4, 8, 11]  # a long run's kept epochs


def test_a_long_run_keeps_about_a_hundred_epochs_of_codes():
    from vaepipe.training.snapshots import kept_epochs
    assert kept_epochs(10) == set(range(11)) and kept_epochs(100) == set(range(101))
    long = kept_epochs(3280)
    assert {0, 33, 3267, 3280} <= long and len(long) == 101
