"""Bad params.yaml values stop a stage with exit code 2 and one line naming the key."""

from __future__ import annotations

import pytest

from support import ROOT, run_stage, set_params
from vaepipe.errors import ParamsError
from vaepipe.params import load_params

# (change, the key the message must name, a word of what is allowed)
BAD = [
    ({"seed": -1}, "seed", ">= 0"),
    ({"seed": "one"}, "seed", "integer"),
    ({"d": 0}, "d", ">= 1"),
    ({"d": 2.5}, "d", "integer"),
    ({"beta": -0.5}, "beta", ">= 0"),
    ({"beta": "big"}, "beta", "number"),
    ({"beta": float("nan")}, "beta", "finite"),
    ({"epochs": 0}, "epochs", ">= 1"),
    ({"epochs": True}, "epochs", "integer"),
    ({"model": "gan"}, "model", "vae, ae"),
    ({"data__dataset": "cifar"}, "data.dataset", "mnist, fashion-mnist, custom, folder"),
    ({"data__dataset": "custom"}, "data.mirror", "custom"),
    ({"data__mirror": 5}, "data.mirror", "URL or folder"),
    ({"data__mirror": []}, "data.mirror", "empty list"),
    ({"data__timeout": 0}, "data.timeout", "> 0"),
    ({"data__deadline": 0}, "data.deadline", "> 0"),
    ({"data__verify": "sometimes"}, "data.verify", "true or false"),
    ({"data__verify": 1}, "data.verify", "true or false"),
    ({"data__sha256": {"x.gz": "0" * 64}}, "data.sha256", "not one of the four files"),
    ({"data__sha256": {"t10k-labels-idx1-ubyte.gz": "abc"}}, "data.sha256.t10k-labels-idx1-ubyte.gz", "64 hex"),
    ({"data__sha256": {"t10k-labels-idx1-ubyte.gz": "0" * 64}}, "data.sha256", "all four or none"),
    ({"data__sha256": "abc"}, "data.sha256", "mapping of file name"),
    ({"train__batch_size": 0}, "train.batch_size", ">= 1"),
    ({"train__lr": 0}, "train.lr", "> 0"),
    ({"train__likelihood": "poisson"}, "train.likelihood", "bernoulli, continuous-bernoulli, discretized, gaussian"),
    ({"data__binarize": "yes"}, "data.binarize", "none, dynamic, static"),
    ({"train__device": "tpu"}, "train.device", "auto, cpu, cuda"),
    ({"train__momentum": 0.9}, "train.momentum", "unknown key"),
    ({"evaluate__iw_samples": 0}, "evaluate.iw_samples", ">= 1"),
    ({"evaluate__elbo_samples": "ten"}, "evaluate.elbo_samples", "integer"),
    ({"evaluate__iw_samples": 20_000_000}, "evaluate.iw_samples", "<= 100000"),
    ({"evaluate__fd_samples": 1.5e4 + 0.5}, "evaluate.fd_samples", "integer"),
    ({"data__mirror": ""}, "data.mirror", "empty"),
    ({"data__mirror": "   "}, "data.mirror", "empty"),
    ({"data__mirror": "ftp://example.org/mnist/"}, "data.mirror", "ftp:// is not supported"),
    ({"data__mirror": "http:/example.org/mnist/"}, "data.mirror", "not a URL"),
    ({"data__mirror": ["/data/mnist", ""]}, "data.mirror entry ''", "empty"),
    ({"generate__samples": 0}, "generate.samples", ">= 1"),
    ({"generate__morph__start": -1}, "generate.morph.start", ">= 0"),
    ({"data__side": 2}, "data.side", ">= 4"),
    ({"data__side": 4096}, "data.side", "<= 512"),
    ({"data__test_fraction": 0}, "data.test_fraction", "> 0"),
    ({"data__test_fraction": 1}, "data.test_fraction", "<= 0.9"),
    ({"data__dataset": "folder", "data__path": " "}, "data.path", "folder"),
    ({"generate__morph__steps": 1}, "generate.morph.steps", ">= 2"),
    ({"project__epochs": []}, "project.epochs", "non-empty"),
    ({"project__method": "umap"}, "project.method", "tsne, pca"),
    ({"project__points": 1}, "project.points", ">= 2"),
    ({"classifier__lr": -1}, "classifier.lr", "> 0"),
    ({"classifier": [1, 2]}, "classifier", "mapping"),
    ({"lr": 0.01}, "lr", "unknown key"),
]


@pytest.mark.parametrize("change, key, allowed", BAD, ids=[key for _, key, _ in BAD])
def test_bad_value_names_the_key(workdir, change, key, allowed):
    set_params(workdir, **change)
    with pytest.raises(Exception) as caught:
        load_params(workdir / "params.yaml")
    message = str(caught.value)
    assert message.startswith(f"{key}:") and allowed in message and "\n" not in message


@pytest.mark.parametrize("stage", ["download", "normalize", "train", "evaluate"])
@pytest.mark.parametrize("change, key", [({"d": 0}, "d"), ({"train__lr": -1}, "train.lr"),
                                         ({"data__mirorr": "x"}, "data.mirorr")])
def test_stage_with_bad_params_exits_2_with_one_line(workdir, stage, change, key):
    set_params(workdir, **change)
    result = run_stage(stage, workdir)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {key}:") and result.stderr.count("\n") == 1
    assert list(workdir.iterdir()) == [workdir / "params.yaml"]


def test_missing_key_is_named(workdir):
    text = (workdir / "params.yaml").read_text().replace("  lr: 0.001\n", "", 1)
    (workdir / "params.yaml").write_text(text)
    with pytest.raises(Exception, match=r"^train\.lr: missing"):
        load_params(workdir / "params.yaml")


def test_invalid_yaml_gives_the_line(workdir):
    (workdir / "params.yaml").write_text("seed: 1\nd: [20\n")
    result = run_stage("train", workdir)
    assert result.returncode == 2 and "not valid YAML at line" in result.stderr


def test_defaults_load_as_typed_values():
    params = load_params(ROOT / "params.yaml")
    assert (params.seed, params.d, params.beta, params.epochs, params.model) == (1, 20, 1.0, 10, "vae")
    assert params.train.batch_size == 256 and params.train.lr == 0.001
    assert params.project.epochs == [0, 5, 10] and params.trained_beta == 1.0


def write_params(workdir, old: str, new: str):
    path = workdir / "params.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return load_params(path)


@pytest.mark.parametrize("written, key, value", [
    ("  lr: 1e-3\n", "lr", 0.001), ("  lr: 1E-3\n", "lr", 0.001), ("  lr: 5e-4\n", "lr", 0.0005),
])
def test_scientific_notation_without_a_dot_is_a_number(workdir, written, key, value):
    params = write_params(workdir, "  lr: 0.001\n", written)
    assert params.train.lr == value and isinstance(params.train.lr, float)


def test_integral_scientific_notation_is_an_integer(workdir):
    params = write_params(workdir, "  fd_samples: 10000", "  fd_samples: 1E4")
    assert params.evaluate.fd_samples == 10000 and isinstance(params.evaluate.fd_samples, int)


def test_duplicate_key_names_the_key_and_both_lines(workdir):
    text = (workdir / "params.yaml").read_text()
    first = text.splitlines().index("d: 20              # latent dimensions; the hidden layers have d² units (400)") + 1
    (workdir / "params.yaml").write_text(text + "d: 30\n")
    last = len(text.splitlines()) + 1
    result = run_stage("train", workdir)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr == f"error: d: written twice in params.yaml (lines {first} and {last}); keep one\n"


def test_project_epochs_past_the_run_are_not_a_params_error(workdir):
    set_params(workdir, epochs=3)
    assert load_params(workdir / "params.yaml").project.epochs == [0, 5, 10]


def test_alias_bomb_params_give_one_short_line(workdir):
    """A few KB of YAML aliases expand to millions of list items; the error quotes a prefix."""
    chain = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    chain += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 6)}]" for i in range(1, 8)]
    text = (workdir / "params.yaml").read_text()
    (workdir / "params.yaml").write_text(text.replace("seed: 1", f"seed: [{', '.join(chain)}]", 1))
    assert len((workdir / "params.yaml").read_text()) < len(text) + 1000
    result = run_stage("train", workdir)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert len(result.stderr) < 300, result.stderr[:300]


@pytest.mark.parametrize("value,message", [([], "non-empty list of widths"), ([200, 0], "widths from 1"),
                                           ("200", "null or a list of layer widths")])
def test_hidden_widths_are_checked(workdir, value, message):
    set_params(workdir, hidden=value)
    with pytest.raises(ParamsError, match=message):
        load_params(workdir / "params.yaml")
