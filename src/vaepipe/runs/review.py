"""A Markdown review of the workspace against a base revision, as a pull request shows it:
the params and metrics that changed, the headline metrics, both runs' training curves
overlaid, and both runs' figures side by side.

    python -m vaepipe.runs.review [BASE] [--out review]

It reads only git-tracked files (metrics/, plots/) and DVC's diffs, so it works in a fresh
clone with no DVC cache; for a folder of images it also lists the images that changed, when
both runs' lists of files are in the cache or the remote.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vaepipe.atomic import write_text  # noqa: E402
from vaepipe.runs.dvcjson import dvc_json  # noqa: E402
from vaepipe.errors import UserError  # noqa: E402
from vaepipe.outputs import FILES_USED, METRICS, PLOTS  # noqa: E402
from vaepipe.runs.markdown import escape, table, unsafe_links  # noqa: E402
from vaepipe.runs.noise import LEGEND, MARK, spread, within_noise  # noqa: E402

LISTED = 20  # changed images named in the report, per kind of change
HEADLINE = ["test.loss", "test.iw_nll", "samples.fd", "test.likelihood"]  # the last says what iw_nll is
FIGURES = ["samples.png", "morph.png", "projection.png"]
CURVES = str(PLOTS / "training.csv")
EVAL = str(METRICS / "eval.json")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True)


def at_base(base: str, path: str) -> bytes | None:
    """A git-tracked file as it is at `base`, or None when it is not there."""
    result = subprocess.run(["git", "show", "--end-of-options", f"{base}:{path}"], capture_output=True)
    return result.stdout if result.returncode == 0 else None


def dvc_diff(kind: str, base: str) -> str:
    """What `dvc params diff` or `dvc metrics diff` against the base found, as an escaped
    Markdown table (values come from the pull request: `<img …>` in a param stays text)."""
    diff = dvc_json(kind, "diff", base)
    with_difference = kind == "metrics"  # a param's change has no difference to show
    columns = ["old", "new"] + ["diff"] * with_difference
    stds = spread()
    rows = [[path, key, *(_number(values.get(column), 5) for column in columns)]
            + ([_noise(key, values.get("diff"), stds)] if with_difference else [])
            for path, changes in diff.items() for key, values in sorted(changes.items())]
    if not rows:
        return f"No {kind} changed."
    header = ["path", kind[:-1], "base", "change"] + ["difference", "beyond reseeding?"] * with_difference
    return table(header, rows) + (f"\n\n{LEGEND}" if with_difference and stds else "")


def _noise(metric: str, difference, stds: dict[str, float]) -> str:
    within = within_noise(metric, difference, stds)
    return "—" if within is None else f"no {MARK}" if within else "yes"


def headline(base: str) -> str:
    diff = {key: value for metrics in dvc_json("metrics", "diff", base, "--all").values()
            for key, value in metrics.items()}
    rows, stds = [], spread()
    for key in HEADLINE:
        values = diff.get(key, {})
        rows.append([key, *(_number(values.get(name)) for name in ("old", "new", "diff")),
                     _noise(key, values.get("diff"), stds)])
    return table(["metric", "base", "change", "difference", "beyond reseeding?"], rows) + (
        f"\n\n{LEGEND}" if stds else "")


def _number(value, decimals: int = 3) -> str:
    return "—" if value is None else f"{value:.{decimals}f}" if isinstance(value, float) else str(value)


def curves_figure(base_csv: bytes | None, path: Path) -> None:
    """Both runs' test and train loss by epoch; the y-axis spans epochs 1 on, where the runs
    differ (the untrained epoch 0 is several times higher and would flatten them)."""
    runs = {"change": Path(CURVES).read_text() if Path(CURVES).exists() else None,
            "base": base_csv.decode() if base_csv else None}
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100, layout="constrained")
    trained = []
    for name, text in runs.items():
        if text is None:
            continue
        rows = list(csv.DictReader(io.StringIO(text)))
        epochs = [int(row["epoch"]) for row in rows]
        for column, style in (("test_loss", "-"), ("train_loss", "--")):
            values = [float(row[column]) for row in rows]
            trained += [value for epoch, value in zip(epochs, values) if epoch >= 1]
            ax.plot(epochs, values, style, marker=".", color="tab:blue" if name == "change" else "tab:grey",
                    label=f"{name}: {column}")
    if trained:
        low, high = min(trained), max(trained)
        ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per image (nats)")
    ax.set_title("Training curves, base and change (epoch 0, untrained, is off the scale)")
    ax.legend()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def files_by_name(text: str) -> dict[str, str]:
    """{split/file: SHA-256} of a files.json."""
    return {f"{split}: {row['file']}": row["sha256"] for split, rows in json.loads(text).items() for row in rows}


def image_changes(base: str) -> list[str]:
    """The report's lines on which images of a folder data set were added, removed or
    changed since the base; none when the data set is not a folder."""
    if not Path(FILES_USED).exists():
        return []
    import dvc.api

    try:
        before = files_by_name(dvc.api.read(str(FILES_USED), rev=base))
    except Exception:  # noqa: BLE001 - not in the cache, not on the remote, or no folder at the base
        return ["## Images that changed", "", "The base's list of images is not in this cache or on the remote "
                "(`dvc pull` at the base, or `make share` there), so which images changed is not shown.", ""]
    after = files_by_name(Path(FILES_USED).read_text())
    kinds = {"added": sorted(after.keys() - before.keys()), "removed": sorted(before.keys() - after.keys()),
             "changed": sorted(name for name in after.keys() & before.keys() if after[name] != before[name])}
    rows = [[kind, len(names), ", ".join(names[:LISTED])] for kind, names in kinds.items()]
    return ["## Images that changed", "", table(["images", "count", f"the first {LISTED}"], rows), ""]


def report(base: str, out: Path) -> str:
    if base.startswith("-") or run("git", "rev-parse", "--verify", "--quiet", "--end-of-options",
                                   f"{base}^{{commit}}").returncode != 0:
        raise UserError(f"{base[:60]!r}: not a revision of this repository; fetch it or name another base")
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Review: workspace against {escape(base)}", ""]
    if at_base(base, EVAL) is None:
        lines += [f"> **The base {escape(base)} has no metrics**: run the pipeline there and commit "
                  "`metrics/` and `plots/` to compare against it. Only this change's numbers follow.", ""]
    lines += ["## Headline metrics", "", headline(base), "",
              "## Params that changed", "", dvc_diff("params", base), "",
              "## Metrics that changed", "", dvc_diff("metrics", base), "", *image_changes(base)]
    curves_figure(at_base(base, CURVES), out / "curves.png")
    lines += ["## Training curves", "", "![training curves](curves.png)", "",
              "## Figures", "", "| figure | base | change |", "|---|---|---|"]
    for name in FIGURES:
        cells = []
        for side, data in (("base", at_base(base, str(PLOTS / name))),
                           ("change", (PLOTS / name).read_bytes() if (PLOTS / name).exists() else None)):
            if data is None:
                cells.append("(none)")
                continue
            (out / side).mkdir(exist_ok=True)
            (out / side / name).write_bytes(data)
            cells.append(f"![{side} {name}]({side}/{name})")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    text = "\n".join(lines) + "\n"
    found = unsafe_links(text, out)
    if found:
        raise UserError(f"the report would not be safe to post: {found[0]}")
    write_text(out / "report.md", text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?", default="main", help="the revision to compare with")
    parser.add_argument("--out", type=Path, default=Path("review"), help="folder for the report")
    args = parser.parse_args(argv)
    if shutil.which("dvc") is None:
        sys.exit("error: dvc is not on PATH: run `make review` or activate .venv")
    try:
        report(args.base, args.out)
    except UserError as error:
        sys.exit(f"error: {error}")
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
