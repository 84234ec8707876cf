"""Experiments as one table: `dvc exp show --json` read into pandas, one row per run with
the params that differ between the runs and the metrics a sweep compares (the tables of
docs/latent.md and docs/likelihoods.md).

    python -m vaepipe.runs.table [--csv] [--metrics test.kl,test.recon] [-- DVC_EXP_SHOW_ARGS]

e.g. `python -m vaepipe.runs.table -- --all-commits` for every experiment of every commit.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys

import pandas as pd

from vaepipe.runs.dvcjson import dvc_json
from vaepipe.errors import UserError, printable
from vaepipe.runs.noise import LEGEND, MARK, spread, within_noise
from vaepipe.params import dotted

METRICS = ["test.kl", "test.recon", "test.loss", "test.iw_nll", "test.active_units", "samples.fd", "samples_gmm.fd"]


def flatten(tree: dict) -> dict:
    """Nested params or metrics as dotted keys, a list as its text so that it compares and sorts."""
    return {key: str(value) if isinstance(value, list) else value for key, value in dotted(tree).items()}


def read_run(entry: dict) -> tuple[dict, dict] | None:
    """(params, metrics) of one revision of `dvc exp show --json`; None for a run that
    failed or is still queued (it has no data)."""
    data = entry.get("data") or {}
    if entry.get("error") or not data:
        return None

    def every_file(kind: str) -> dict:  # params.yaml and any other params or metrics files, merged
        return {key: value for content in (data.get(kind) or {}).values()
                for key, value in flatten(content.get("data") or {}).items()}
    return every_file("params"), every_file("metrics")


def runs(show: list[dict]) -> pd.DataFrame:
    """Every run of `dvc exp show --json`: the baselines (commits) and their experiments,
    the workspace last, left out where it repeats a run; columns ("params", key) and
    ("metrics", key), and the run's name as the index."""
    entries = []
    for baseline in show:
        entries.append(baseline)
        entries += [rev for group in baseline.get("experiments") or [] for rev in group.get("revs") or []]
    entries.sort(key=lambda entry: entry.get("rev") == "workspace")
    records, names = [], []
    for entry in entries:
        found = read_run(entry)
        if found is not None:
            params, metrics = found
            records.append({**{("params", k): v for k, v in params.items()},
                            **{("metrics", k): v for k, v in metrics.items()}})
            rev = entry.get("rev", "")
            names.append(entry.get("name") or (rev if rev == "workspace" else rev[:7]))
    frame = pd.DataFrame(records, index=pd.Index(names, name="experiment"))
    frame.columns = pd.MultiIndex.from_tuples(frame.columns) if len(frame.columns) else frame.columns
    return frame[~frame.astype(str).duplicated()]


def sweep(frame: pd.DataFrame, metrics: list[str] = METRICS) -> tuple[pd.DataFrame, list[str]]:
    """The params that differ between the runs, sorted by them (null first), beside the chosen metrics
    (those that some run has), with flat column names; and the names of those params."""
    if frame.empty:
        return pd.DataFrame(), []
    kinds = frame.columns.get_level_values(0)
    params, measured = (frame[kind] if kind in kinds else pd.DataFrame(index=frame.index)
                        for kind in ("params", "metrics"))
    varying = [key for key in params if params[key].astype(str).nunique(dropna=False) > 1]
    shown = [key for key in metrics if key in measured]
    table = pd.concat([params[varying], measured[shown]], axis=1)
    return (table.sort_values(varying, kind="stable", na_position="first") if varying else table), varying


def readable(table: pd.DataFrame, params: list[str], baseline: str | None = None,
             stds: dict[str, float] | None = None) -> pd.DataFrame:
    """Params as written (`0.25`, `2`), metrics to two decimals (four digits below 1), – where
    a run lacks one: the form of the docs' tables. With a `baseline` row and the seeds'
    spread, a metric that differs from the baseline's by no more than reseeding would is
    marked ≈ (vaepipe.runs.noise)."""
    def cell(value, is_param: bool) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        if not isinstance(value, float):
            return str(value)
        return f"{value:g}" if is_param else f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.4g}"

    shown = table.apply(lambda column: column.map(lambda value: cell(value, column.name in params)))
    if baseline in table.index and stds:
        for metric in (name for name in table.columns if name not in params):
            base = table.at[baseline, metric]
            for row in table.index.drop(baseline):
                value = table.at[row, metric]
                if isinstance(value, float) and isinstance(base, float) and \
                        within_noise(metric, value - base, stds):
                    shown.at[row, metric] += f" {MARK}"
    return shown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", action="store_true", help="CSV, every value in full, instead of Markdown")
    parser.add_argument("--metrics", default=",".join(METRICS), help="comma-separated metric names")
    parser.add_argument("--baseline", help="the row the others are compared with (default: the first commit)")
    parser.add_argument("show_args", nargs="*", help="passed to `dvc exp show` (after --)")
    args = parser.parse_args(argv)
    if shutil.which("dvc") is None:
        sys.exit("error: dvc is not on PATH: activate .venv")
    try:
        show = dvc_json("exp", "show", *args.show_args)
    except UserError as error:
        sys.exit(f"error: {error}")
    every = runs(show)
    baseline = args.baseline or (every.index[0] if len(every) else None)
    table, params = sweep(every, [name for name in args.metrics.split(",") if name])
    if table.empty:
        sys.exit("error: no run with params or metrics yet: run `dvc repro` or `dvc exp run` first")
    # a pulled experiment's names and values are anyone's text: no escape sequence reaches the terminal
    table, params = table.rename(index=printable, columns=printable), [printable(name) for name in params]
    if args.csv:
        print(table.map(lambda value: printable(value) if isinstance(value, str) else value).to_csv(), end="")
        return
    shown = readable(table, params, baseline and printable(baseline), spread())
    print(shown.map(printable).to_markdown(disable_numparse=True))
    if shown.map(lambda cell: cell.endswith(MARK)).to_numpy().any():
        print(f"\n{LEGEND}; against {printable(baseline)}")


if __name__ == "__main__":
    main()
