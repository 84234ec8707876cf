"""Stage project: the test-set means by epoch in 2-D, plots/projection.{png,csv} (figure 8)."""

from vaepipe.atomic import write_csv
from vaepipe.stage import require, run_stage
from vaepipe.figures.projection import projection_needs, projection_rows, save_projection_figure
from vaepipe.layout import class_names
from vaepipe.outputs import CLASSES, PLOTS, SNAPSHOTS
from vaepipe.resources import check_fits
from vaepipe.training.snapshots import figure_epochs, load_snapshot, stored_epochs


def main(params):
    options = params.project
    folder = require(SNAPSHOTS, "train")
    epochs = figure_epochs(options.epochs, stored_epochs(folder))
    snapshots = {epoch: load_snapshot(folder, epoch) for epoch in epochs}
    mu = next(iter(snapshots.values()))["mu"]
    check_fits(projection_needs(mu.shape[1], options.points, len(mu), len(epochs)))
    rows = projection_rows(snapshots, options.points, options.method, params.seed)
    write_csv(PLOTS / "projection.csv", rows)
    save_projection_figure(PLOTS / "projection.png", rows, snapshots, options.method, options.bubbles,
                           class_names(CLASSES))


if __name__ == "__main__":
    run_stage(main)
