"""What a fork's pull request, a hostile checkpoint or ONNX file, a folder's names or a web
page could turn against the user: each hole closed, and the check that shows it stays closed.
(Folder ingestion's links, formats, sizes and names are in test_folder.py.)"""

from __future__ import annotations

import html
import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from support import BIN, ROOT, dvc, load_in_fresh_process, make_repo, run_stage, set_params, stage_env
from vaepipe.errors import UserError
from vaepipe.runs.markdown import escape, unsafe_links

FIGURE = "![base samples.png](base/samples.png)\n"


@pytest.fixture
def report_folder(tmp_path) -> Path:
    (tmp_path / "base").mkdir()
    (tmp_path / "base/samples.png").write_bytes(b"\x89PNG")
    return tmp_path


@pytest.mark.parametrize("form", [
    "[up]: ../../../../etc/passwd\n![x][up]\n",  # a reference-style image and its definition
    "[up]: /etc/passwd\n",  # a definition alone: CML uploads it all the same
    "> [up]: ../secret.txt\n",  # inside a block quote
    "- [up]:\n  ../secret.txt\n",  # inside a list item, its target on the next line
    "| a | ![x][up] |\n",  # a reference in a table cell
    "![x][]\n",  # a collapsed reference
    '<img src="../secret.png">\n',
    '<a href="../../.git/config">x</a>\n',
    "<file:///etc/passwd>\n",  # an autolink
    "<../../.git/config>\n",
    "[x](../secret.png)\n",
    "see www.example.org/x.png\n",
])
def test_report_link_definitions_are_refused(report_folder, form):
    """Every way Markdown names a file or a URL, other than the report's own figures."""
    assert unsafe_links(FIGURE, report_folder) == []
    assert unsafe_links(FIGURE + form, report_folder), form
    report = report_folder / "report.md"
    report.write_text(FIGURE + form)
    result = subprocess.run([sys.executable, "-m", "vaepipe.runs.markdown", str(report)], capture_output=True,
                            text=True, env=stage_env())
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "not safe to post" in result.stderr


def test_report_cells_read_as_plain_text():
    """Only what could make markup, a link, a mention or math is escaped: the report reads
    as text in a terminal, and nothing in a cell becomes Markdown on GitHub."""
    for name in ("test.loss", "test.iw_nll", "samples_gmm.fd", "data/normalized", "beta = 2, d = 10"):
        assert escape(name) == name
    for hostile, raw in (("www.example.org", "www."), ("@someone", "@"), ("_em_", "_em_"), ("a|b", "|"),
                         ("$x$", "$"), ("http://x", "://"), ("[x]: y", "]:"), ("`c`", "`"), ("a\nb", "\n"),
                         ("\x1b[2J", "\x1b"), ("#12", "#12"), ("~~s~~", "~")):
        assert raw not in escape(hostile), hostile
        assert html.unescape(escape(hostile)) == hostile or hostile[0] == "\x1b"  # (html drops &#27;)


@pytest.mark.parametrize("inside", ["data/raw", "data/raw/mine", "data/normalized", "models", "explorer", "metrics",
                                    "plots/mine", "data", "."])
def test_data_path_inside_an_output_is_refused(workdir, inside):
    """A data.path that is, lies in or holds a stage's output: one line when params load,
    before anything is read or written; the images stay where they are."""
    images = workdir / inside / "a" / "0.png"
    images.parent.mkdir(parents=True, exist_ok=True)
    images.write_bytes(b"not used")
    set_params(workdir, data__dataset="folder", data__path=inside)
    result = run_stage("normalize", workdir)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: data.path:") and "stage's output" in result.stderr
    assert images.read_bytes() == b"not used" and not (workdir / "data/normalized/train.pt").exists()


def test_data_path_inside_data_raw_is_refused_by_dvc_before_it_deletes_anything(tmp_path):
    """DVC deletes a stage's outputs before the stage runs, so the stage's own check would
    come too late for data/raw: the download stage lists data.path, and DVC refuses the
    overlap before running anything."""
    repo = make_repo(tmp_path / "repo", "unused", dataset="folder", data__path="data/raw/mine")
    mine = repo / "data/raw/mine/a/0.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's only copy")
    result = dvc(repo, "repro", check=False)
    assert result.returncode != 0 and "both a dependency and an output" in result.stderr, result.stderr
    assert mine.read_bytes() == b"the user's only copy"


def test_every_output_folder_is_one_the_params_check_knows():
    from vaepipe.outputs import OUTPUT_FOLDERS

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    written = [next(iter(entry)) if isinstance(entry, dict) else entry for stage in stages.values()
               for kind in ("outs", "metrics", "plots") for entry in stage.get(kind, [])]
    for path in written:
        assert any(Path(path).is_relative_to(folder) for folder in OUTPUT_FOLDERS), path


def _checkpoint(tmp_path: Path, content) -> Path:
    path = tmp_path / "model.pt"
    torch.save(content, path)
    return path


HPARAMS = {"d": 20, "variational": True, "likelihood": "bernoulli"}


@pytest.mark.parametrize("content", [
    torch.zeros(3),  # a bare tensor
    {"state_dict": {}, "hparams": []},
    {"state_dict": {"encoder.0.weight": torch.zeros(1, 784)}, "hparams": {**HPARAMS, "hidden": [65536, 65536]}},
    {"state_dict": {"encoder.0.weight": torch.zeros(1, 784)}, "hparams": {**HPARAMS, "d": 10 ** 9}},
    {"state_dict": {"encoder.0.weight": torch.zeros(1, 784)}, "hparams": {**HPARAMS, "likelihood": "x"}},
    {"state_dict": {"encoder.0.weight": torch.zeros(1).expand(400, 784)}, "hparams": HPARAMS},
], ids=["bare-tensor", "hparams-a-list", "huge-hidden", "huge-d", "unknown-likelihood", "broadcast-tensor"])
def test_a_malformed_checkpoint_is_one_line_before_any_model_is_built(tmp_path, content):
    from vaepipe.api import load

    with pytest.raises(UserError, match="is not a model this project wrote") as error:
        load(_checkpoint(tmp_path, content))
    assert "\n" not in str(error.value)


def test_a_checkpoint_asking_for_a_huge_model_costs_no_memory(tmp_path):
    """A 5 KB file whose hparams ask for three layers of 8192 units was built (1 GB) before
    its state dict was compared: the shapes are checked first now."""
    path = _checkpoint(tmp_path, {"state_dict": {"encoder.0.weight": torch.zeros(1, 784)},
                                  "hparams": {**HPARAMS, "hidden": [8192] * 3}})
    assert path.stat().st_size < 10_000
    refused, grown_mb, stderr = load_in_fresh_process(path)
    assert refused.startswith("refused:") and "hidden" not in stderr, stderr
    assert grown_mb < 100, f"loading grew the process by {grown_mb} MB"


def test_a_checkpoint_of_this_project_still_loads(tmp_path):
    from vaepipe.api import load
    from vaepipe.model.vae import VAE, save_model

    model = VAE(d=3, hidden=[16, 8], activation="tanh")
    save_model(tmp_path / "m.pt", model, {})
    z = torch.randn(2, 3)
    assert torch.equal(load(tmp_path / "m.pt").decode(z), model.eval().decode(z))


def _export(tmp_path: Path) -> tuple[Path, Path]:
    from vaepipe.model.export import export
    from vaepipe.model.vae import VAE

    export(VAE(d=4, hidden=[16]), tmp_path / "onnx", {})
    return tmp_path / "onnx/encoder.onnx", tmp_path / "onnx/decoder.onnx"


@pytest.mark.parametrize("damage", ["no-metadata", "d-not-a-number", "missing-initializer", "gemm-without-inputs"])
def test_an_onnx_file_without_the_expected_metadata_or_graph_is_one_line(tmp_path, damage):
    import onnx

    from vaepipe.explorer.build import build

    encoder, decoder = _export(tmp_path)
    graph = onnx.load(str(encoder))
    if damage == "no-metadata":
        del graph.metadata_props[:]
    elif damage == "d-not-a-number":
        next(prop for prop in graph.metadata_props if prop.key == "d").value = "four"
    elif damage == "missing-initializer":
        del graph.graph.initializer[:]
    else:
        gemm = next(node for node in graph.graph.node if node.op_type == "Gemm")
        del gemm.input[1:]
    onnx.save(graph, str(encoder))
    with pytest.raises(UserError, match="not an ONNX model this project exported") as error:
        build(tmp_path / "explorer", encoder=encoder, decoder=decoder, test_x=np.zeros((1, 784)),
              mu=np.zeros((1, 4)), projection_csv=tmp_path / "none.csv", kl_csv=tmp_path / "none.csv",
              mixture={}, params={}, metrics={}, classes=[])
    assert "\n" not in str(error.value) and not (tmp_path / "explorer").exists()


def test_class_names_are_drawn_as_plain_text_in_every_figure(tmp_path):
    """`$…$` in a class folder's name is drawn as written, never parsed as math (an invalid
    formula was a matplotlib traceback in generate and project)."""
    from vaepipe.figures.style import save_digit_figure
    from vaepipe.figures.projection import save_projection_figure

    classes = [r"$\undefinedcommand$", "$x^2$"]
    save_digit_figure(tmp_path / "morph.png", np.zeros((28, 56)), f"Morphing the test set's first {classes[0]}",
                      ["latent path"])
    mu = np.random.default_rng(0).standard_normal((10, 2)).astype(np.float32)
    snapshots = {0: {"mu": mu, "logvar": np.zeros_like(mu), "labels": np.arange(10) % 2}}
    rows = [{"epoch": 0, "x": float(x), "y": float(y), "label": k % 2} for k, (x, y) in enumerate(mu)]
    save_projection_figure(tmp_path / "projection.png", rows, snapshots, "tsne", 0, classes)
    for name in ("morph.png", "projection.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _get(port: int, host: str | None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("GET", "/index.html", skip_host=True)
    if host is not None:
        connection.putheader("Host", host)
    connection.endheaders()
    status = connection.getresponse().status
    connection.close()
    return status


def test_the_explorer_server_answers_only_requests_addressed_to_this_machine(tmp_path):
    """A page that rebinds its own name to 127.0.0.1 sends its name as Host: refused."""
    from vaepipe.explorer.serve import server

    (tmp_path / "index.html").write_text("<p>the run's test images</p>")
    httpd = server(str(tmp_path), 0)
    port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        assert _get(port, f"127.0.0.1:{port}") == 200 and _get(port, f"localhost:{port}") == 200
        for foreign in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.attacker.example:{port}", None):
            assert _get(port, foreign) == 421, foreign
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_make_explore_serves_through_the_host_check(tmp_path):
    """`make explore` itself: a foreign Host is refused, 127.0.0.1 answered."""
    repo = tmp_path / "repo"
    (repo / "explorer").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    (repo / "explorer/index.html").write_text("<p>page</p>")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(["make", "--no-print-directory", "explore", f"PORT={port}", f"VENV={BIN.parent}",
                                "INSTALLED="], cwd=repo, env=stage_env(), stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert process.stdout.readline().startswith("explorer: http://127.0.0.1:")
        for _ in range(100):
            try:
                status = _get(port, f"127.0.0.1:{port}")
                break
            except OSError:
                time.sleep(0.1)  # make starts the server
        assert status == 200 and _get(port, f"rebound.example:{port}") == 421
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=10)


def test_the_comment_job_installs_no_floating_npm_packages():
    """setup-cml's default npm-installs canvas and vega at floating versions, install scripts
    and all, in the job that holds the write token."""
    from test_workflows import WORKFLOWS, steps

    found = [step for workflow in WORKFLOWS for step in steps(workflow)
             if step.get("uses", "").startswith("iterative/setup-cml@")]
    assert found
    for step in found:
        assert step["with"]["vega"] is False
