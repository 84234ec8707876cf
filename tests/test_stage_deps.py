"""Every stage lists, as its deps in dvc.yaml, exactly the project code it runs: its script,
every module of `vaepipe` its imports reach (at any depth, those inside functions too), and
requirements.lock (the packages' versions shape the bits). So editing any of them re-runs
the stage, locally and for the shared run cache, and the list cannot drift. requirements.lock
holds exactly the packages the stages run; the extras' are in requirements-extras.lock."""

from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support import ROOT

SRC = ROOT / "src"


def module_file(name: str) -> Path:
    path = SRC / (name.replace(".", "/") + ".py")
    return path if path.exists() else SRC / name.replace(".", "/") / "__init__.py"


def imported(path: Path) -> set[str]:
    """The `vaepipe` modules a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vaepipe":
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if module_file(f"{node.module}.{alias.name}").exists()}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "vaepipe"}
    return found


def import_closure(script: Path) -> set[str]:
    """Files of the project that running `script` can execute."""
    seen, todo = set(), list(imported(script)) + ["vaepipe"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += imported(module_file(name))
            todo += [name.rpartition(".")[0]] if "." in name else []  # a wing's __init__ runs first
    return {str(module_file(name).relative_to(ROOT)) for name in seen}


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def package_data(modules: set[str]) -> set[str]:
    """The folders of files a module reads beside it (the explorer's page/): folders inside a
    wing of the closure that hold no Python."""
    wings = {(ROOT / module).parent for module in modules}
    return {str(folder.relative_to(ROOT)) for wing in wings for folder in wing.iterdir()
            if folder.is_dir() and folder.name != "__pycache__" and not any(folder.rglob("*.py"))}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_exactly_the_code_it_runs(name):
    script = ROOT / "stages" / f"{name}.py"
    listed = STAGES[name]["deps"]
    assert len(listed) == len(set(listed)), "a dep listed twice"
    closure = import_closure(script)
    code = {dep for dep in listed if dep.endswith(".py") or dep == "requirements.lock" or dep.startswith("src/")}
    assert code == closure | package_data(closure) | {f"stages/{name}.py", "requirements.lock"}


def test_the_closure_follows_imports_inside_functions(tmp_path, monkeypatch):
    """The guard itself: an import inside a function counts, as it runs when called."""
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from vaepipe.runs.share import share\n")
    assert "src/vaepipe/runs/share.py" in import_closure(script)


def test_train_lists_every_train_param_but_how_it_checkpoints():
    """A train.* param that shapes the bits but is not listed would let the run cache hand
    back another run's model; checkpoint_every and resume_across_machines shape none of a run
    never stopped and would only re-run training."""
    from vaepipe.params import TrainParams

    listed = {name for name in STAGES["train"]["params"] if name.startswith("train")}
    unkeyed = {"train.checkpoint_every", "train.resume_across_machines"}
    assert listed == {f"train.{field}" for field in TrainParams.__dataclass_fields__} - unkeyed


def pins(path: Path) -> dict[str, str]:
    """A constraints file's package names (normalised) and versions."""
    return {canonicalize_name(line.partition("==")[0]): line.partition("==")[2]
            for line in path.read_text().splitlines() if line and not line.startswith("#")}


def dependency_closure(name: str) -> set[str]:
    """The installed packages `name` needs without its extras, at any depth (with the extras
    its own dependencies ask for), as this machine's environment markers select them."""
    seen, todo = set(), [(requirement, "") for requirement in metadata.requires(name)]
    while todo:
        text, extra = todo.pop()
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        for wanted in requirement.extras or {""}:
            if (canonicalize_name(requirement.name), wanted) not in seen:
                seen.add((canonicalize_name(requirement.name), wanted))
                todo += [(text, wanted) for text in metadata.requires(requirement.name) or []]
    return {package for package, _ in seen}


def test_requirements_lock_pins_exactly_what_the_stages_run():
    """requirements.lock, every stage's dep, pins vaepipe's dependencies and all they pull in;
    the extras' packages (tests, remotes, cloud) are in requirements-extras.lock, which no
    stage lists, so bumping a test tool re-runs nothing and keeps every cached run."""
    runtime, extras = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-extras.lock")
    assert set(runtime) == dependency_closure("vaepipe")
    assert not set(runtime) & set(extras)
    for package, version in runtime.items():  # what `make install` installed is what is pinned
        assert metadata.version(package) == version, package
    assert all("requirements-extras.lock" not in stage["deps"] for stage in STAGES.values())
