"""A team's set-up, with the real tools: a shared DVC remote (a folder, and WebDAV served by
a real server on 127.0.0.1) holding the cache and the run cache, so a fresh clone trains
nothing; and experiments that travel between clones of one bare git repository."""

from __future__ import annotations

import csv
import hashlib
import subprocess

import pytest

from support import BIN, Mirror, dvc, free_port, git, make_repo, stage_env, wait_for_server, write_dataset
from test_pipeline import ran

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def webdav(tmp_path_factory):
    """A WsgiDAV server on 127.0.0.1 serving an empty folder; its URL for DVC."""
    if not (BIN / "wsgidav").exists():
        pytest.skip("wsgidav is not installed: `make test` installs it with the test extra")
    root, port = tmp_path_factory.mktemp("webdav"), free_port()
    server = subprocess.Popen([str(BIN / "wsgidav"), "--host=127.0.0.1", f"--port={port}", f"--root={root}",
                               "--auth=anonymous", "--server=cheroot", "--no-config", "-q"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_server(server, port, "WebDAV")
    yield f"webdav://127.0.0.1:{port}/", root
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    served = Mirror(write_dataset(tmp_path_factory.mktemp("mirror")))
    yield served.url
    served.close()


def publish(repo, bare) -> None:
    """Push `repo`'s main to a bare repository standing for the team's git server."""
    git(bare.parent, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")


def files_under(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def share(repo) -> str:
    """`make share`: the run cache and every output its entries name, to the default remote."""
    result = subprocess.run([str(BIN / "python"), "-m", "vaepipe.runs.share"], cwd=repo, capture_output=True,
                            text=True, env=dict(stage_env(), PYTHONPATH=str(repo / "src")))
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("kind", ["folder", "webdav"])
def test_fresh_clone_pulls_what_was_run_and_runs_nothing(kind, mirror, webdav, tmp_path):
    repo = make_repo(tmp_path / "repo", mirror)
    url, served = (str(tmp_path / "dvc-remote"), tmp_path / "dvc-remote") if kind == "folder" else webdav
    dvc(repo, "remote", "add", "-d", "shared", url)  # in .dvc/config: every clone has it
    dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "run")
    publish(repo, tmp_path / "origin.git")
    baseline_model = (repo / "models/model.pt").read_bytes()
    dvc(repo, "exp", "run", "-S", "beta=2")  # an experiment, run here only
    assert "run-cache entries" in share(repo)
    stored = files_under(served)
    assert any(name.startswith("runs/") for name in stored)  # the run cache, on the server
    assert any(name.startswith("files/md5/") for name in stored)

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tmp_path / "origin.git"), str(clone))
    dvc(clone, "pull")
    result = dvc(clone, "repro")
    assert ran(result.stdout) == [] and "up to date" in result.stdout, result.stdout
    assert (clone / "models/model.pt").read_bytes() == baseline_model
    result = dvc(clone, "exp", "run", "--pull", "-S", "beta=2")  # restored from the server
    assert ran(result.stdout) == [], result.stdout
    assert (clone / "models/model.pt").read_bytes() == (repo / "models/model.pt").read_bytes()
    assert (clone / "metrics/eval.json").read_bytes() == (repo / "metrics/eval.json").read_bytes()


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_experiments_travel_between_machines(mirror, tmp_path):
    """Two machines each run a β and push it; a third sees both and gets one's model."""
    origin, remote = tmp_path / "origin.git", tmp_path / "dvc-remote"
    founder = make_repo(tmp_path / "founder", mirror)
    dvc(founder, "remote", "add", "-d", "shared", str(remote))
    git(founder, "add", "-A")
    git(founder, "commit", "-q", "-m", "shared DVC remote")
    publish(founder, origin)

    machines = {}
    for name, beta in (("a", "2"), ("b", "4")):
        clone = tmp_path / name
        git(tmp_path, "clone", "-q", str(origin), str(clone))
        result = dvc(clone, "exp", "run", "--name", f"beta-{beta}", "-S", f"beta={beta}")
        assert "train" in ran(result.stdout)
        dvc(clone, "exp", "push", "origin", f"beta-{beta}")
        machines[beta] = clone

    third = tmp_path / "c"
    git(tmp_path, "clone", "-q", str(origin), str(third))
    dvc(third, "exp", "pull", "origin", "--all-commits")
    rows = list(csv.DictReader(dvc(third, "exp", "show", "--csv").stdout.splitlines()))
    assert {row["Experiment"] for row in rows if row["Experiment"]} == {"beta-2", "beta-4"}
    assert {float(row["beta"]) for row in rows if row["Experiment"]} == {2.0, 4.0}

    dvc(third, "exp", "apply", "beta-2")
    dvc(third, "pull")
    assert md5(third / "models/model.pt") == md5(machines["2"] / "models/model.pt")
    assert (third / "metrics/eval.json").read_text() == (machines["2"] / "metrics/eval.json").read_text()
    result = dvc(third, "repro")
    assert ran(result.stdout) == []  # its model came from the remote, not from training
