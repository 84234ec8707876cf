"""Every experiment the repository knows, read from what git and the DVC cache already hold:
nothing is checked out and nothing re-run.

The runs are those `dvc exp show` lists from every baseline: the tip of each branch (local
or fetched) and tag, HEAD, and every commit an experiment was made from (its ref, refs/exps/<sha>/<name>,
names it), with the workspace; queued, running and failed experiments are kept and marked,
with their params only. For each run with results, its git-tracked outputs (the training
curves, the projection's points, the figures) come out of its commit, and its explorer out
of the DVC cache by the hash its dvc.lock records. An output whose stage did not run for
this run's params (`dvc exp run train` leaves the figures of the run it started from) is
reported stale rather than shown as this run's.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from vaepipe.errors import UserError
from vaepipe.params import dotted
from vaepipe.runs.dvcjson import dvc_json
from vaepipe.runs.table import flatten

CURVES = "plots/training.csv"
PROJECTION = "plots/projection.csv"
EXPLORER = "explorer"
FIGURES = ("samples", "reconstructions", "morph", "projection", "traversals", "manifold", "gmm_samples",
           "kl_variance")
MAX_FILE = 64 << 20  # a figure or table larger than this is not a figure of this pipeline


@dataclass
class Run:
    id: str  # unique on the page: a commit's or experiment's sha, or "workspace"
    name: str
    kind: str  # "workspace", "commit" or "experiment"
    status: str  # "done", "queued", "running" or "failed"
    rev: str | None  # the git revision holding its outputs; None for the workspace
    baseline: str = ""  # the commit an experiment was made from
    refs: list[str] = field(default_factory=list)  # the branches and tags at a commit
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # those of the stages that ran for this run
    metric_files: dict[str, dict] = field(default_factory=dict)  # every metrics file as DVC read it
    outputs: dict[str, bytes] = field(default_factory=dict)  # git-tracked outputs by path
    stale: list[str] = field(default_factory=list)  # outputs of stages not run for this run
    explorer: str | None = None  # the explorer folder's hash in the DVC cache
    explorer_missing: str = ""  # why there is none


class GitObjects:
    """Files at any revision through one `git cat-file --batch`: a process, not one per file."""

    def __init__(self, repo: Path):
        self.process = subprocess.Popen(["git", "cat-file", "--batch"], cwd=repo, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)

    def read(self, rev: str, path: str) -> bytes | None:
        self.process.stdin.write(f"{rev}:{path}\n".encode())
        self.process.stdin.flush()
        header = self.process.stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            return None  # "missing", or a folder
        size = int(header[2])
        content = self.process.stdout.read(size)
        self.process.stdout.read(1)  # the newline after each object
        return content if size <= MAX_FILE else None

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"git {args[0]} failed in {repo}: {(result.stderr.strip().splitlines() or ['?'])[-1][:200]}")
    return result.stdout


def baselines(repo: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The commits whose experiments are shown, and the branch and tag names at each commit."""
    commits, names = [], {}
    for line in git(repo, "for-each-ref", "--format=%(objectname) %(*objectname) %(refname)").splitlines():
        sha, peeled, ref = line.split(" ", 2)
        target = peeled or sha  # an annotated tag: the commit it points at
        if ref.startswith(("refs/heads/", "refs/tags/", "refs/remotes/")) and not ref.endswith("/HEAD"):
            commits.append(target)  # a branch, a tag, or a fetched branch (origin/main in a review)
            names.setdefault(target, []).append(ref.split("/", 2)[2])
        elif ref.startswith("refs/exps/") and len(parts := ref.split("/")) == 5 and len(parts[2] + parts[3]) == 40:
            commits.append(parts[2] + parts[3])  # refs/exps/<2>/<38>/<name>: the experiment's baseline
    head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=repo, capture_output=True, text=True)
    if head.returncode != 0:
        raise UserError(f"{repo} has no commit yet: commit the project (`git commit`) and run it first")
    return list(dict.fromkeys([head.stdout.strip(), *commits])), names


STATES = {"queued": "queued", "running": "running", "failed": "failed"}


def runs_of(show: list[dict], refs: dict[str, list[str]]) -> list[Run]:
    """One Run per revision of `dvc exp show --json`."""
    found: dict[str, Run] = {}
    for baseline in show:
        rev = baseline.get("rev", "")
        base_name = " ".join(refs.get(rev, [])) or rev[:7]
        workspace = rev == "workspace"
        entry = Run(id=rev, rev=None if workspace else rev, kind="workspace" if workspace else "commit",
                    name="workspace" if workspace else base_name, status="done", refs=refs.get(rev, []))
        read_data(entry, baseline)
        found.setdefault(entry.id, entry)
        for group in baseline.get("experiments") or []:
            state = STATES.get(((group.get("executor") or {}).get("state") or ""), "done")
            for exp in group.get("revs") or []:
                sha = exp.get("rev", "")
                run = Run(id=sha, rev=sha, kind="experiment", name=exp.get("name") or group.get("name") or sha[:7],
                          status="failed" if exp.get("error") else state, baseline=base_name)
                read_data(run, exp)
                found.setdefault(run.id, run)
    return list(found.values())


def read_data(run: Run, entry: dict) -> None:
    data = entry.get("data") or {}
    files = {kind: {path: flatten(content.get("data") or {}) for path, content in (data.get(kind) or {}).items()}
             for kind in ("params", "metrics")}
    run.params = {key: value for values in files["params"].values() for key, value in values.items()}
    run.metric_files = files["metrics"] if run.status == "done" else {}  # a queued run's are its baseline's


def stage_of_outputs(lock: dict) -> dict[str, str]:
    return {out["path"]: name for name, stage in (lock.get("stages") or {}).items()
            for out in stage.get("outs") or [] if isinstance(out, dict) and "path" in out}


def fresh_stages(lock: dict, params: dict) -> set[str]:
    """The stages of a dvc.lock that ran for these params: each param the stage recorded has
    the run's value, and each output it read is the one its producer recorded, produced by a
    stage that is itself fresh."""
    stages = lock.get("stages") or {}
    hashes = {out["path"]: out.get("md5") for stage in stages.values() for out in stage.get("outs") or []
              if isinstance(out, dict) and "path" in out}
    producer = stage_of_outputs(lock)
    verdict: dict[str, bool] = {}

    def fresh(name: str) -> bool:
        if name not in verdict:
            verdict[name] = False  # a cycle, impossible in a valid lock, is not fresh
            stage = stages[name]
            recorded = {key: value for values in (stage.get("params") or {}).values()
                        for key, value in dotted(values).items()}
            same_params = all(_same(params.get(key, _ABSENT), value) for key, value in recorded.items())
            same_inputs = all(hashes.get(dep.get("path")) == dep.get("md5") and fresh(producer[dep["path"]])
                              for dep in stage.get("deps") or [] if dep.get("path") in producer)
            verdict[name] = same_params and same_inputs
        return verdict[name]
    return {name for name in stages if fresh(name)}


_ABSENT = object()


def _same(ours, recorded) -> bool:
    if isinstance(recorded, list):
        return flatten({"x": recorded})["x"] == ours  # flatten writes lists as their text
    if ours == recorded:
        return True
    try:  # 2 and 2.0; and PyYAML reads DVC's 1e-08 as text
        return float(recorded) == float(ours)
    except (TypeError, ValueError):
        return False


def read_outputs(run: Run, objects: GitObjects, repo: Path) -> None:
    """The run's metrics, curves, projection and figures, and its explorer's hash; what a
    stage not run for this run left is named in run.stale."""
    def read(path: str) -> bytes | None:
        if run.rev is None:
            file = repo / path
            return file.read_bytes() if file.is_file() and file.stat().st_size <= MAX_FILE else None
        return objects.read(run.rev, path)

    try:
        lock = yaml.safe_load(read("dvc.lock") or b"") or {}
    except yaml.YAMLError:
        lock = {}
    fresh, producer = fresh_stages(lock, run.params), stage_of_outputs(lock)
    for path, values in run.metric_files.items():
        if producer.get(path) in fresh:
            run.metrics |= values
        else:
            run.stale.append(path)
    for path in [CURVES, PROJECTION, *(f"plots/{name}.png" for name in FIGURES)]:
        content = read(path)
        if content is None:
            continue
        if producer.get(path) in fresh:
            run.outputs[path] = content
        else:
            run.stale.append(path)
    out = next((out for out in (lock.get("stages") or {}).get("explore", {}).get("outs") or []
                if out.get("path") == EXPLORER), None)
    if out is None:
        run.explorer_missing = "no explorer in its dvc.lock"
    elif "explore" not in fresh:
        run.explorer_missing = "its explorer is an earlier run's (`dvc exp run` did not reach the explore stage)"
    else:
        run.explorer = str(out.get("md5") or "")


def curves(content: bytes) -> dict[str, list[float]]:
    """plots/training.csv as columns of numbers."""
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8", "replace"))))
    columns = {}
    for key in rows[0] if rows else []:
        try:
            columns[key] = [float(row[key]) for row in rows]
        except (TypeError, ValueError):
            continue  # a column that is not numbers is not a curve
    return columns


def projection(content: bytes) -> dict[str, list]:
    """plots/projection.csv as {epoch: [[x, y, label], ...]}, rounded for the page."""
    points: dict[str, list] = {}
    for row in csv.DictReader(io.StringIO(content.decode("utf-8", "replace"))):
        try:
            points.setdefault(str(int(row["epoch"])), []).append(
                [round(float(row["x"]), 3), round(float(row["y"]), 3), str(row.get("label", ""))[:40]])
        except (KeyError, TypeError, ValueError):
            continue
    return points


def cache_folder(repo: Path) -> Path:
    """Where this repository's DVC cache lies (`dvc cache dir`: .dvc/cache unless configured)."""
    result = subprocess.run(["dvc", "cache", "dir"], cwd=repo, capture_output=True, text=True)
    return Path(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip() else repo / ".dvc" / "cache"


def cached(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def folder_files(cache: Path, md5: str) -> list[tuple[str, Path]] | None:
    """A folder output's files, (relative path, cached file), from its .dir listing in the
    cache; None where the cache lacks the listing or any file of it."""
    listing = cached(cache, md5)
    if not md5.endswith(".dir") or not listing.is_file():
        return None
    try:
        entries = json.loads(listing.read_text())
        files = [(str(PurePosixPath(entry["relpath"])), cached(cache, entry["md5"])) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    safe = all(not PurePosixPath(rel).is_absolute() and ".." not in PurePosixPath(rel).parts for rel, _ in files)
    return files if safe and all(path.is_file() for _, path in files) else None


def collect(repo: Path) -> list[Run]:
    """Every run of the repository at `repo`, with its outputs read."""
    if not (repo / ".dvc").is_dir():
        raise UserError(f"{repo} is not a DVC project (no .dvc/): run this from the project's root")
    commits, refs = baselines(repo)
    args = [arg for commit in commits for arg in ("--rev", commit)]
    show = dvc_json("exp", "show", *args, cwd=repo)
    runs = runs_of(show, refs)
    objects = GitObjects(repo)
    try:
        for run in runs:
            if run.status == "done":
                read_outputs(run, objects, repo)
    finally:
        objects.close()
    return runs
