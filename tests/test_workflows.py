"""The GitHub workflows: actionlint (a pinned binary from PyPI, no download) finds nothing,
and the review workflow asks for no more than it needs."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from conftest import BIN, ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def actionlint(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "actionlint"), *map(str, paths)], capture_output=True, text=True)


def test_there_are_review_and_sweep_workflows():
    assert {path.name for path in WORKFLOWS} == {"review.yml", "sweep.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[path.name for path in WORKFLOWS])
def test_workflow_passes_actionlint(workflow):
    result = actionlint(workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_flags_an_outdated_action_and_a_bad_expression(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - uses: actions/checkout@v2\n"
                      "      - run: echo ${{ github.no_such_context }}\n")
    result = actionlint(broken)
    assert result.returncode != 0
    assert "actions/checkout@v2" in result.stdout and "no_such_context" in result.stdout


def test_review_workflow_comments_once_with_least_privilege():
    workflow = yaml.safe_load((ROOT / ".github/workflows/review.yml").read_text())
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = workflow["jobs"]["review"]["steps"]
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    commands = "\n".join(step.get("run", "") for step in steps)
    for expected in ("make .venv/.installed", "dvc pull --run-cache", "dvc repro $PULL", "make share", "make review",
                     "cml comment update"):
        assert expected in commands
    assert any(step.get("uses", "").startswith("iterative/setup-cml@") for step in steps)
