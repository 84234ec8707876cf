"""The library's wings and their floors (docs/architecture.md): a module imports only from
floors below its own, never from a sibling on its floor, so no import runs up and there is
no circle. Each wing's `__init__.py` imports nothing, so importing one module of a wing
never pulls in the rest (and no stage imports PyTorch by accident)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from test_stage_deps import SRC, imported

# top to bottom; the parts of one floor are independent of each other
FLOORS = [
    {"api", "stage", "assign"},  # entry points: users, the stage scripts, the cloud run
    {"compare"},  # the page over every run, which reads what runs/ reads
    {"training", "figures", "explorer", "runs"},
    {"evaluation"},
    {"model"},
    {"data"},
    {"atomic", "resources", "params", "fingerprint"},
    {"errors", "layout", "outputs"},
]


def part(module: str) -> str:
    """vaepipe.data.idx -> data; vaepipe.errors -> errors; vaepipe -> ''."""
    return module.split(".")[1] if "." in module else ""


def violations(src: Path) -> list[str]:
    floor_of = {name: level for level, names in enumerate(FLOORS) for name in names}
    found = []
    for path in sorted((src / "vaepipe").rglob("*.py")):
        module = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        here = part(module)
        if not here:  # vaepipe/__init__.py, which imports nothing (below)
            continue
        if here not in floor_of:
            found.append(f"{module}: in no floor of FLOORS")
            continue
        for target in sorted(imported(path)):
            there = part(target)
            if there and there != here and floor_of.get(there, -1) <= floor_of[here]:
                found.append(f"{module} imports {target}: {there} is not on a floor below {here}")
    return found


def test_every_import_runs_down_the_floors():
    assert violations(SRC) == []


def test_a_wrong_import_is_caught(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy)
    idx = copy / "vaepipe" / "data" / "idx.py"
    idx.write_text(idx.read_text() + "\nfrom vaepipe.training.loop import fit  # noqa: E402\n")
    sibling = copy / "vaepipe" / "runs" / "table.py"
    sibling.write_text(sibling.read_text() + "\nfrom vaepipe.explorer.build import write_page  # noqa: E402\n")
    assert violations(copy) == [
        "vaepipe.data.idx imports vaepipe.training.loop: training is not on a floor below data",
        "vaepipe.runs.table imports vaepipe.explorer.build: explorer is not on a floor below runs"]


def test_each_wing_init_imports_nothing():
    for init in [SRC / "vaepipe" / "__init__.py", *sorted((SRC / "vaepipe").glob("*/__init__.py"))]:
        body = ast.parse(init.read_text()).body
        assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body), init
