"""Stage train: the model, its per-epoch history, and the test-set codes at every epoch."""

from vaepipe.stage import require, run_stage
from vaepipe.data import load_split, split_length, split_shape
from vaepipe.model import save_model
from vaepipe.outputs import METRICS, MODEL, PLOTS, SNAPSHOTS, normalized
from vaepipe.resources import check_fits
from vaepipe.snapshots import save_snapshots
from vaepipe.device import pick_device
from vaepipe.train import LiveCurves, fit, training_needs


def main(params):
    train_path, test_path = (require(normalized(split), "normalize") for split in ("train", "test"))
    (n_train, pixels), n_test = split_shape(train_path), split_length(test_path)
    check_fits(training_needs(params.d, params.train.batch_size, params.epochs, n_train, n_test, pixels,
                              params.widths),
               pick_device(params.train.device))
    train_x, _ = load_split(train_path)
    test_x, test_labels = load_split(test_path)
    live = LiveCurves(PLOTS / "training.csv", METRICS / "train.json")
    try:
        model, history = fit(params, train_x, test_x, on_epoch=live)
    except BaseException:
        live.discard()
        raise
    save_snapshots(SNAPSHOTS, history.codes, test_labels)
    save_model(MODEL, model, {"beta": params.trained_beta, "binarize": params.data.binarize})


if __name__ == "__main__":
    run_stage(main)
