"""Colour pictures through the convolutional VAE, on real digits: the whole MNIST's first
--train and --test images tinted in random ink and ground colours (tests/test_colour.py's
`tinted`), written as a folder of 28 × 28 PNGs, one sub-folder per digit, and run at
side 32 with `data.channels: 3` and `arch: conv` by `dvc repro` in a fresh clone of this
checkout. Prints the run's numbers and how well the reconstructions keep each picture's
colours, and saves the explorer, a test picture encoded in it, as docs/explorer-colour.png.

    python experiments/colour.py [--mnist FOLDER] [--train 10000] [--test 2000] [--epochs 10]
                                 [--set train.likelihood=continuous-bernoulli ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
from support import CHROMIUM, FLAGS, find_mnist, in_repo, serving  # noqa: E402
from test_colour import SIDE, tinted  # noqa: E402
from vaepipe.data.idx import read_split  # noqa: E402


def tinted_mnist(mnist: Path, folder: Path, counts: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        images, labels = read_split(mnist, split)
        for i, (picture, label) in enumerate(zip(tinted(images[:count].reshape(-1, 28, 28), rng), labels)):
            where = folder / split / str(label)
            where.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(where / f"{i:05d}.png")


def screenshot(explorer: Path, picture: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, serving(explorer) as url:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1240})
        page.goto(url)
        page.evaluate("explorer.ready")
        page.set_input_files("#picture", str(picture))
        page.wait_for_function("explorer.drawnRecon !== undefined")
        page.click("#prior")
        page.hover("#map", position={"x": 170, "y": 170})  # a test picture and its reconstruction
        page.wait_for_timeout(500)
        page.screenshot(path=str(out))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=find_mnist())
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--test", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a param more, as `dvc exp run -S` takes it (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pictures, folder = Path(tmp) / "pictures", Path(tmp) / "clone"
        tinted_mnist(args.mnist, pictures, {"train": args.train, "test": args.test})
        subprocess.run(["git", "clone", "-q", str(ROOT), str(folder)], check=True)
        (folder / "node_modules").symlink_to(ROOT / "node_modules")  # the explorer's onnxruntime-web (make install)
        params = yaml.safe_load((folder / "params.yaml").read_text())
        params |= {"arch": "conv", "epochs": args.epochs}
        params["data"] |= {"dataset": "folder", "path": str(pictures), "side": SIDE, "channels": 3}
        (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        if args.set:  # as users set a param: comments kept, the value checked
            subprocess.run([sys.executable, "-m", "vaepipe.assign", *args.set], cwd=folder, env=env, check=True)
        start = time.perf_counter()
        subprocess.run(["dvc", "repro"], cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"dvc repro: {time.perf_counter() - start:.0f} s")
        for name in ("eval", "classifier"):
            print(name, (folder / "metrics" / f"{name}.json").read_text().strip())
        given, rebuilt = np.array(json.loads(in_repo(folder, """import json, torch
from vaepipe.data.splits import load_split, unit
from vaepipe.model.vae import load_model
model, _ = load_model('models/model.pt')
x = unit(load_split('data/normalized/test.pt')[0])
with torch.no_grad():
    recon = model.decode(model.encode(x)[0])
print(json.dumps([t.view(len(t), 3, -1).mean(-1).tolist() for t in (x, recon)]))""")))
        print(f"per-channel mean error of the reconstructions: {np.abs(rebuilt - given).mean():.4f} "
              f"(against another picture's colours: {np.abs(rebuilt - np.roll(given, 1, axis=0)).mean():.4f})")
        out = ROOT / "docs" / "explorer-colour.png"
        screenshot(folder / "explorer", sorted((pictures / "test" / "7").glob("*.png"))[0], out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
