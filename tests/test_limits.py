"""Unreasonable inputs stop a stage before the work: one line naming what was wrong, no
traceback, nothing written or the old output untouched, and little memory spent."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import resource
import shutil
import struct
import subprocess
import sys

import pytest

from support import ROOT, FAST, Mirror, dvc, make_repo, run_stage, set_params, stage_env, write_dataset
from test_pipeline import STAGES, ran
from vaepipe.resources import available_cores

GB = 1 << 30
# stage script run under this launcher: it writes its own peak RSS (KiB) beside params.yaml
# as it exits (stages leave through os._exit, skipping atexit). VmHWM, not ru_maxrss: Linux
# carries a forking parent's RSS into the child's ru_maxrss, so a child of a large pytest
# process would report the parent's size.
MEASURED = ("import os, re, runpy, sys\n"
            "def record():\n"
            "    open('maxrss', 'w').write(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
            "leave = os._exit\n"
            "os._exit = lambda code: (record(), leave(code))\n"
            "try:\n"
            "    runpy.run_path(sys.argv[1], run_name='__main__')\n"
            "finally:\n"
            "    record()\n")


def run_measured(stage: str, folder, **options) -> tuple[subprocess.CompletedProcess, int]:
    """Run a stage script; return its result and its peak resident memory in bytes."""
    result = subprocess.run([sys.executable, "-c", MEASURED, str(ROOT / "stages" / f"{stage}.py")],
                            cwd=folder, env=stage_env(), capture_output=True, text=True, timeout=600,
                            **options)
    peak = int((folder / "maxrss").read_text()) * 1024
    (folder / "maxrss").unlink()
    return result, peak


def the_one_line(result) -> str:
    """The whole of stderr: exactly one line, an error, no traceback."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def gigabytes(line: str) -> float:
    """The estimate a refusal quotes: `needs about 226.3 GB`."""
    amount, unit = re.search(r"needs about ([\d.]+) (GB|MB)", line).groups()
    return float(amount) * (1 if unit == "GB" else 1 / 1024)


def snapshot_of(folder) -> dict[str, str]:
    """MD5 of every file under the outputs, to show they are untouched."""
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for top in ("data", "models", "metrics", "plots") if (folder / top).exists()
            for p in sorted((folder / top).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder where every stage has run once on a small custom data set."""
    folder = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    mirror = write_dataset(tmp_path_factory.mktemp("mirror"))
    set_params(folder, data__dataset="custom", data__mirror=str(mirror), **FAST)
    for stage in STAGES:
        result = run_stage(stage, folder)
        assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def params_restored(project):
    saved = (project / "params.yaml").read_text()
    yield project
    (project / "params.yaml").write_text(saved)


REFUSED = [  # (stage, change, key named, more than this many GB it would have needed)
    ("train", {"d": 3000}, "d", 100),
    ("train", {"epochs": 100_000_000}, "epochs", 30),  # the history's rows: a long run keeps ~100 epochs of codes
    ("evaluate", {"evaluate__fd_samples": 50_000_000}, "evaluate.fd_samples", 100),
    ("generate", {"generate__samples": 50_000_000}, "generate.samples", 0),
    ("generate", {"generate__reconstructions": 1000}, "generate.reconstructions", 0),
    ("generate", {"generate__morph__steps": 5000}, "generate.morph.steps", 0),
    ("latent", {"evaluate__fd_samples": 50_000_000}, "evaluate.fd_samples", 100),
    ("latent", {"latent__manifold_steps": 5000}, "latent.manifold_steps", 0),
    ("latent", {"latent__traversal_steps": 1_000_000}, "latent.traversal_steps", 0),
]


@pytest.mark.parametrize("stage, change, key, needed", REFUSED, ids=[f"{stage}-{key}" for stage, _, key, _ in REFUSED])
def test_too_much_memory_is_refused_before_the_work(params_restored, stage, change, key, needed):
    project = params_restored
    before = snapshot_of(project)
    set_params(project, **change)
    result, peak = run_measured(stage, project)
    line = the_one_line(result)
    assert line.startswith(f"error: {key}: ") and f"lower {key}" in line
    if needed:  # a memory estimate, compared with the limit
        assert gigabytes(line) > needed and "memory available" in line
    else:  # a figure larger than matplotlib can draw
        assert "matplotlib draws at most 65535" in line
    assert peak < 1 * GB
    assert snapshot_of(project) == before


def test_more_mixture_components_than_training_images_is_one_line(params_restored):
    project = params_restored
    before = snapshot_of(project)
    set_params(project, latent__gmm_components=1000)
    line = the_one_line(run_stage("latent", project))
    assert line == "error: latent.gmm_components: 1000 components for 600 training images; use at most 600"
    assert snapshot_of(project) == before


def test_large_k_for_the_bound_is_computed_in_chunks(params_restored):
    """k = 5000, as papers use, fits: the bound decodes a few thousand draws at a time."""
    project = params_restored
    set_params(project, evaluate__iw_samples=5000, evaluate__fd_samples=100)
    result, peak = run_measured("evaluate", project)
    assert result.returncode == 0, result.stderr
    assert peak < 1 * GB  # 200 images × 5000 draws × 784 pixels at once would be 3 GB


def write_gz(path, header: bytes, body_chunks) -> None:
    with gzip.GzipFile(path, "wb", mtime=0, compresslevel=1) as stream:
        stream.write(header)
        for chunk in body_chunks:
            stream.write(chunk)


def zeros(total: int, chunk: int = 1 << 24):
    for start in range(0, total, chunk):
        yield bytes(min(chunk, total - start))


HOSTILE = {
    # 100 images promised, 2 GB of zeros behind them: a few MB compressed
    "gzip bomb": (struct.pack(">IIII", 0x803, 100, 28, 28), 2 * GB, "decompresses to more than"),
    "absurd count": (struct.pack(">IIII", 0x803, 0xFFFFFFFF, 28, 28), 1000, "far more than this machine"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_custom_file_is_refused_while_streaming(case, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    mirror = write_dataset(tmp_path / "mirror", md5sums=False)
    header, extra, reason = HOSTILE[case]
    write_gz(mirror / "train-images-idx3-ubyte.gz", header, zeros(100 * 784 + extra))
    server = Mirror(mirror)
    try:
        set_params(folder, data__dataset="custom", data__mirror=server.url, data__verify=False)
        result, peak = run_measured("download", folder)
    finally:
        server.close()
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and "Traceback" not in result.stderr and len(error) == 1
    assert "train-images-idx3-ubyte.gz" in error[0] and reason in error[0]
    assert peak < 1 * GB
    assert not (folder / "data").exists() or not any((folder / "data").iterdir())


def test_hostile_raw_file_is_refused_by_normalize(params_restored):
    project = params_restored
    raw = project / "data/raw/t10k-images-idx3-ubyte.gz"
    saved = raw.read_bytes()
    before = snapshot_of(project)
    try:
        write_gz(raw, struct.pack(">IIII", 0x803, 200, 28, 28), zeros(200 * 784 + GB))
        result, peak = run_measured("normalize", project)
    finally:
        raw.write_bytes(saved)
    line = the_one_line(result)
    assert "t10k-images-idx3-ubyte.gz decompresses to more than the 156800 bytes" in line
    assert peak < 1 * GB
    assert snapshot_of(project) == before


def file_size_limit(nbytes: int):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


@pytest.mark.parametrize("stage", STAGES)
def test_full_disk_leaves_the_previous_output_intact(project, stage):
    """Writes past 100 bytes fail as on a full disk (EFBIG; Python ignores SIGXFSZ)."""
    before = snapshot_of(project)
    result = subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py")], cwd=project,
                            env=dict(stage_env(), PYTHONDONTWRITEBYTECODE="1"), capture_output=True,
                            text=True, timeout=600, preexec_fn=file_size_limit(100))
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and "Traceback" not in result.stderr and len(error) == 1, result.stderr
    assert error[0].startswith("error: could not write ") and "File too large" in error[0]
    assert "previous output is unchanged" in error[0]
    assert snapshot_of(project) == before
    leftovers = [p for top in ("data", "models", "metrics", "plots") for p in (project / top).rglob(".*.tmp")]
    assert leftovers == []


@pytest.mark.e2e
def test_exp_run_epochs_3_runs_the_whole_pipeline(tmp_path):
    """The most common quick experiment, with project.epochs left at the notes' [0, 5, 10]."""
    mirror = Mirror(write_dataset(tmp_path / "mirror"))
    try:
        repo = make_repo(tmp_path / "repo", mirror.url, project__epochs=[0, 5, 10], epochs=10)
        result = dvc(repo, "exp", "run", "-S", "epochs=3")
    finally:
        mirror.close()
    assert sorted(ran(result.stdout)) == sorted(STAGES)
    said = result.stdout + result.stderr
    assert "project.epochs [5, 10] are past the last training epoch (3); showing [0, 3]" in said
    epochs = {line.split(",")[0] for line in (repo / "plots/projection.csv").read_text().splitlines()[1:]}
    assert epochs == {"0", "3"}


def test_the_cores_a_stage_counts_are_those_it_may_run_on(monkeypatch):
    """Threads and worker processes are sized by `available_cores`: pinned to one core (as
    taskset or a container's CPU set pins it), a process counts one, not the machine's."""
    ask = "from vaepipe.resources import available_cores; print(available_cores())"
    pinned = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", ask], env=stage_env(),
                            capture_output=True, text=True, check=True)
    assert pinned.stdout == "1\n"
    monkeypatch.delattr("os.sched_getaffinity")  # as on macOS, which keeps no affinity
    assert available_cores() == os.cpu_count()
