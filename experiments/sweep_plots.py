"""The README's β sweep as DVC draws it: `dvc plots diff` over every experiment of a
repository (its charts only, no figures), opened offline in Chromium and saved as
docs/dvc-plots.png, and `make show`'s table.

    python experiments/sweep_plots.py REPO [--out docs/dvc-plots.png]

REPO: a clone of this project with the sweep run in it, e.g. `dvc exp run --queue
-S 'beta=0.25,0.5,1,2,4,8' -S epochs=3` and `dvc queue start` on the whole MNIST.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support import BIN, CHROMIUM, FLAGS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dvc-plots.png")
    args = parser.parse_args()
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")

    def dvc(*words: str) -> str:
        return subprocess.run([str(BIN / "dvc"), *words], cwd=args.repo, env=env, check=True, capture_output=True,
                              text=True).stdout

    experiments = dvc("exp", "list", "--name-only").split()
    charts = [name for name, entries in json.loads(dvc("plots", "diff", "HEAD", *experiments, "--json"))["data"].items()
              if any(entry["type"] == "vega" for entry in entries)]
    with tempfile.TemporaryDirectory() as tmp:
        dvc("plots", "diff", "HEAD", *experiments, "--targets", *charts, "-o", tmp)
        from playwright.sync_api import sync_playwright
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
                       else route.abort())
            page.goto((Path(tmp) / "index.html").as_uri())
            page.wait_for_function(f"document.querySelectorAll('.vega-embed svg, .vega-embed canvas').length >= "
                                   f"{len(charts)}", timeout=60_000)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    print(f"{len(charts)} charts over HEAD and {len(experiments)} experiments: {args.out}")
    print(subprocess.run([str(BIN / "python"), "-m", "vaepipe.runs.table", "--metrics",
                          "test.loss,test.recon,test.kl,test.iw_nll,samples.fd"], cwd=args.repo, env=env,
                         capture_output=True, text=True, check=True).stdout)


if __name__ == "__main__":
    main()
