"""The comparison page: every experiment of the repository on one static page (`make compare`).

    python -m vaepipe.compare.build [--out compare]

Writes, in place of `--out` at once: the page (index.html, compare.js, compare.css),
data.js (every run's params, metrics, curves and projection, as one JSON value), each
figure once under figures/ (named by its content's hash), and each run's explorer restored
from the DVC cache under explorers/. It opens as a file or served by `make explore
FOLDER=compare`; it asks nothing of any other host.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path

from vaepipe.atomic import atomic_path
from vaepipe.compare.collect import (CURVES, FIGURES, PROJECTION, Run, cache_folder, collect, curves,
                                     folder_files, projection)
from vaepipe.errors import UserError, printable
from vaepipe.runs.noise import NOISE_SIGMAS, spread
from vaepipe.runs.table import METRICS

PAGE = Path(__file__).parent / "page"
PNG = b"\x89PNG\r\n\x1a\n"
NOT_CACHED = "not in this machine's DVC cache (`dvc pull`, or `dvc exp pull` for an experiment, fetches it)"


def finite(value):
    """NaN and infinities (a run that diverged) as null: JSON has no word for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def figure_file(out: Path, content: bytes) -> str:
    """The figure written once under out/figures, named by its hash: runs that share it share the file."""
    name = f"figures/{hashlib.sha256(content).hexdigest()[:24]}.png"
    if not (out / name).exists():
        (out / name).write_bytes(content)
    return name


def restore_explorer(out: Path, cache: Path, md5: str) -> str | None:
    """The explorer folder of hash `md5` copied out of the DVC cache (linked where the file
    system allows: the cache's files are read-only); its index page, or None where the cache
    lacks it."""
    files = folder_files(cache, md5)
    if files is None:
        return None
    folder = out / "explorers" / md5.removesuffix(".dir")
    if not folder.exists():
        for relative, source in files:
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
    return f"{folder.relative_to(out).as_posix()}/index.html"


def page_entry(run: Run, out: Path, cache: Path) -> dict:
    """What the page knows of one run."""
    figures = {name: figure_file(out, content) for name in FIGURES
               if (content := run.outputs.get(f"plots/{name}.png")) is not None and content.startswith(PNG)}
    explorer = restore_explorer(out, cache, run.explorer) if run.explorer else None
    return {
        "id": run.id, "name": run.name, "kind": run.kind, "status": run.status, "baseline": run.baseline,
        "refs": run.refs, "params": run.params, "metrics": run.metrics, "stale": run.stale,
        "curves": curves(run.outputs[CURVES]) if CURVES in run.outputs else None,
        "projection": projection(run.outputs[PROJECTION]) if PROJECTION in run.outputs else None,
        "figures": figures,
        "explorer": explorer,
        "explorer_missing": "" if explorer else (run.explorer_missing or NOT_CACHED),
    }


def build(repo: Path, out: Path) -> list[dict]:
    """Write the page over every run of `repo` into `out`; the page's runs."""
    runs = collect(repo)
    cache = cache_folder(repo)
    with atomic_path(out, directory=True) as folder:
        (folder / "figures").mkdir()
        entries = [page_entry(run, folder, cache) for run in runs]
        for name in ("index.html", "compare.js", "compare.css"):
            shutil.copyfile(PAGE / name, folder / name)
        data = {"runs": entries, "figures": list(FIGURES), "headline": METRICS,
                "spread": spread(repo / "docs" / "spread.json"), "noise_sigmas": NOISE_SIGMAS}
        # a script, not a .json fetched: a page opened as a file may not fetch. JSON escapes
        # every string, so no name or value can end the statement.
        text = json.dumps(finite(data), ensure_ascii=True, allow_nan=False)
        (folder / "data.js").write_text(f"window.COMPARE = {text};\n")
    return entries


def summary(entries: list[dict]) -> str:
    counts = {}
    for entry in entries:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    explorers = sum(entry["explorer"] is not None for entry in entries)
    states = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    return f"{len(entries)} runs ({states}); {explorers} with their explorer"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("compare"), help="the folder written (replaced whole)")
    args = parser.parse_args(argv)
    if shutil.which("dvc") is None:
        sys.exit("error: dvc is not on PATH: activate .venv")
    try:
        entries = build(Path.cwd(), args.out)
    except UserError as error:
        sys.exit(f"error: {printable(str(error))}")
    print(f"{args.out}/: {summary(entries)}; open {args.out}/index.html, or serve it: make explore FOLDER={args.out}")


if __name__ == "__main__":
    main()
