"""Stage project: the test-set means by epoch in 2-D, plots/projection.{png,csv} (figure 8)."""

from vaepipe.atomic import write_csv
from vaepipe.cli import require, run_stage
from vaepipe.figures import projection_rows, save_projection_figure
from vaepipe.paths import PLOTS, SNAPSHOTS
from vaepipe.snapshots import load_snapshot


def main(params):
    options = params.project
    snapshots = {epoch: load_snapshot(require(SNAPSHOTS, "train"), epoch) for epoch in options.epochs}
    rows = projection_rows(snapshots, options.points, options.method, params.seed)
    write_csv(PLOTS / "projection.csv", rows)
    save_projection_figure(PLOTS / "projection.png", rows, snapshots, options.method, options.bubbles)


if __name__ == "__main__":
    run_stage(main)
