"""The GitHub workflows: actionlint (a pinned binary from PyPI, no download) finds nothing;
no secret or event text reaches a shell; every action is pinned by commit; pull requests
run with read-only rights; the credential step runs nothing that a secret holds."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from support import BIN, ROOT, stage_env

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
IDS = [path.name for path in WORKFLOWS]


def actionlint(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "actionlint"), *map(str, paths)], capture_output=True, text=True)


def steps(path) -> list[dict]:
    workflow = yaml.safe_load(path.read_text())
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def expressions_in_run(path) -> list[str]:
    """Every `${{ … }}` inside a `run:` text: GitHub pastes it into the script before bash
    parses it, so a secret or a pull request's title there is code."""
    return [f"{step.get('name', step['run'][:40])}: {found}" for step in steps(path) if "run" in step
            for found in re.findall(r"\$\{\{.*?\}\}", step["run"])]


def test_there_are_the_four_workflows():
    assert set(IDS) == {"review.yml", "comment.yml", "main.yml", "sweep.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=IDS)
def test_workflow_passes_actionlint(workflow):
    result = actionlint(workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def one_job(path, trigger: str, steps_text: str):
    """A workflow file of one job with the given steps (YAML, indented as steps)."""
    path.write_text(f"on: {trigger}\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n{steps_text}")
    return path


def test_actionlint_flags_an_outdated_action_and_a_bad_expression(tmp_path):
    broken = one_job(tmp_path / "broken.yml", "push", "      - uses: actions/checkout@v2\n"
                                                      "      - run: echo ${{ github.no_such_context }}\n")
    result = actionlint(broken)
    assert result.returncode != 0
    assert "actions/checkout@v2" in result.stdout and "no_such_context" in result.stdout


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=IDS)
def test_no_expression_inside_a_run_script(workflow):
    assert expressions_in_run(workflow) == []


def test_the_lint_finds_a_secret_or_event_text_in_a_run_script(tmp_path):
    bad = one_job(tmp_path / "bad.yml", "pull_request",
                  "      - run: dvc remote modify x ${{ secrets.DVC_REMOTE_CONFIG }}\n"
                  "      - name: title\n        run: |\n          echo \"${{ github.event.pull_request.title }}\"\n")
    found = expressions_in_run(bad)
    assert len(found) == 2 and "secrets.DVC_REMOTE_CONFIG" in found[0] and "github.event" in found[1]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=IDS)
def test_actions_are_pinned_by_commit_with_their_version(workflow):
    uses = re.findall(r"uses:\s*(\S+)(.*)", workflow.read_text())
    assert uses
    for action, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), action
        assert re.fullmatch(r"\s+# v\d+\.\d+\.\d+", comment), f"{action}: no version comment"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=IDS)
def test_checkout_keeps_no_token_and_cml_is_pinned(workflow):
    for step in steps(workflow):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False
        if step.get("uses", "").startswith("iterative/setup-cml@"):
            assert re.fullmatch(r"\d+\.\d+\.\d+", str(step["with"]["version"]))


def test_pull_requests_run_read_only_and_the_comment_job_runs_none_of_their_code():
    review = yaml.safe_load((ROOT / ".github/workflows/review.yml").read_text())
    assert review["permissions"] == {"contents": "read"}
    review_text = (ROOT / ".github/workflows/review.yml").read_text()
    assert "secrets.DVC_REMOTE_CONFIG " not in review_text and "secrets.DVC_REMOTE_CONFIG }" not in review_text
    assert "make share" not in review_text  # only main (and the sweep) write the shared run cache
    comment = yaml.safe_load((ROOT / ".github/workflows/comment.yml").read_text())
    assert comment[True]["workflow_run"]["workflows"] == ["review"]  # PyYAML reads `on` as True
    commands = "\n".join(step.get("run", "") for step in steps(ROOT / ".github/workflows/comment.yml"))
    assert "make" not in commands and ".venv" not in commands and "dvc" not in commands
    assert "python3 -m vaepipe.runs.markdown review/report.md" in commands  # links checked before posting
    checkout = next(step for step in steps(ROOT / ".github/workflows/comment.yml")
                    if step.get("uses", "").startswith("actions/checkout@"))
    assert "ref" not in checkout["with"]  # the default branch's code, never the pull request's


def test_review_keeps_the_comparison_page_and_the_comment_links_it():
    review = steps(ROOT / ".github/workflows/review.yml")
    built = next(k for k, step in enumerate(review) if step.get("run") == "make compare")
    upload = review[built + 1]
    assert upload["uses"].startswith("actions/upload-artifact@") and upload["with"] == {"name": "compare",
                                                                                       "path": "compare/"}
    comment = steps(ROOT / ".github/workflows/comment.yml")
    names = [step.get("name", "") for step in comment]
    check = next(k for k, name in enumerate(names) if name.startswith("Check the report"))
    link = next(k for k, name in enumerate(names) if name.startswith("Link the comparison page"))
    post = next(k for k, name in enumerate(names) if name.startswith("Post or update"))
    assert check < link < post  # the link is added by trusted code after the report's own links are checked
    assert comment[link]["env"]["RUN_URL"] == ("${{ github.server_url }}/${{ github.repository }}/actions/runs/"
                                               "${{ github.event.workflow_run.id }}")


def test_only_the_shared_cache_environment_holds_the_write_credential():
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        for job in workflow["jobs"].values():
            text = yaml.safe_dump(job)
            if "secrets.DVC_REMOTE_CONFIG }" in text or "secrets.DVC_REMOTE_CONFIG !=" in text:
                assert job.get("environment") == "shared-cache", path.name


HOSTILE = ("['remote \"shared\"']\n"
           "    user = some user\n"
           "    password = p'a\"s s $(touch {canary}) `touch {canary}`; touch {canary} && id\n")


@pytest.mark.parametrize("workflow", ["review.yml", "main.yml", "sweep.yml"])
def test_credential_step_configures_the_remote_and_runs_nothing(tmp_path, workflow):
    """The workflow's own credential step, run by bash with a secret full of shell syntax:
    the remote gets exactly that password and no command in it runs."""
    step = next(step for step in steps(ROOT / ".github/workflows" / workflow)
                if "DVC_CONFIG_LOCAL" in step.get("env", {}))
    canary = tmp_path / "ran"
    repo = tmp_path / "repo"
    repo.mkdir()
    env = stage_env()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run([str(BIN / "dvc"), "remote", "add", "-d", "shared", "webdav://127.0.0.1:9/x"], cwd=repo,
                   check=True, env=env)
    secret = HOSTILE.format(canary=canary)
    result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=repo, capture_output=True, text=True,
                            env={**env, "DVC_CONFIG_LOCAL": secret})
    assert result.returncode == 0, result.stderr
    assert not canary.exists()
    assert (repo / ".dvc/config.local").stat().st_mode & 0o077 == 0  # readable by its owner only
    password = subprocess.run([str(BIN / "dvc"), "config", "remote.shared.password"], cwd=repo, env=env,
                              capture_output=True, text=True, check=True).stdout.strip()
    assert password == f"p'a\"s s $(touch {canary}) `touch {canary}`; touch {canary} && id"
    assert not canary.exists() and os.environ.get("DVC_CONFIG_LOCAL") is None
