"""The pytest fixtures: checkpoints in a folder of the session's, mirrors, work folders,
the whole MNIST, a browser, and `report` for a test's numbers. Their helpers live in support.py."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest

from support import CHROMIUM, FLAGS, ROOT, Mirror, find_mnist


@pytest.fixture(autouse=True, scope="session")
def checkpoint_store(tmp_path_factory):
    """Training checkpoints of every test's runs in a folder of the session's, never the
    user's cache (vaepipe.training.checkpoint)."""
    os.environ["VAEPIPE_CHECKPOINTS"] = str(tmp_path_factory.mktemp("checkpoints"))
    os.environ["VAEPIPE_CHECKPOINT_SECRET"] = secrets.token_hex(32)  # never the user's own key file


def pytest_collection_modifyitems(items):
    """The files with end-to-end tests first (a stable sort keeps each file whole and in
    order): pytest-xdist hands out files in this order, so the minutes-long ones start at once
    and the short unit files fill the workers' ends, instead of one worker running the last
    long file alone."""
    end_to_end = {item.path for item in items if item.get_closest_marker("e2e")}
    items.sort(key=lambda item: item.path not in end_to_end)


@pytest.fixture
def report(request):
    """report(line): a number a test measured, printed in the run's summary; what a test
    prints is not shown when pytest-xdist's workers run it (`make test`)."""
    return lambda line: request.node.user_properties.append(("report", line))


def pytest_terminal_summary(terminalreporter):
    lines = [f"{report.nodeid}: {value}" for reports in terminalreporter.stats.values() for report in reports
             if getattr(report, "when", None) == "call" for name, value in report.user_properties if name == "report"]
    if lines:
        terminalreporter.section("what the tests measured")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def serve():
    """serve(folder, faults) -> a running Mirror, shut down after the test."""
    mirrors = []

    def start(folder: Path, faults: dict | None = None, **options) -> Mirror:
        mirrors.append(Mirror(folder, faults, **options))
        return mirrors[-1]

    yield start
    for mirror in mirrors:
        mirror.close()


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A project root holding the default params.yaml, for running stage scripts."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    return folder


@pytest.fixture(scope="session")
def mnist() -> Path:
    folder = find_mnist()
    if folder is None:
        pytest.skip("the real MNIST (shared/data/mnist beside the checkout, or $VAEPIPE_MNIST) is absent")
    return folder


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, driven by Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()
