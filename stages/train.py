"""Stage train: the model, its per-epoch history, and the test-set codes at every epoch;
a run stopped midway resumes from its last checkpoint (`vaepipe.training.checkpoint`)."""

from vaepipe.atomic import write_json
from vaepipe.training.checkpoint import Checkpoints, run_key
from vaepipe.fingerprint import machine
from vaepipe.stage import require, run_stage
from vaepipe.data.splits import load_split, split_length, split_shape, training_images
from vaepipe.errors import Interrupted
from vaepipe.model.vae import built, footprint, save_model
from vaepipe.outputs import MACHINE, METRICS, MODEL, PLOTS, SNAPSHOTS, normalized
from vaepipe.resources import check_fits
from vaepipe.training.snapshots import save_snapshots
from vaepipe.model.device import pick_device
from vaepipe.training.loop import LiveCurves, fit, training_needs


def main(params):
    train_path, test_path = (require(normalized(split), "normalize") for split in ("train", "test"))
    (n_train, pixels), n_test = split_shape(train_path), split_length(test_path)
    device = pick_device(params.train.device)
    network = footprint(built(params.d, params.variational, params.train.likelihood, pixels, params.hidden,
                              params.activation, params.arch, device="meta", arch_options=params.arch_options))
    check_fits(training_needs(network, params.d, params.train.batch_size, params.epochs, n_train, n_test, pixels),
               device)
    here = machine(device)
    checkpoints = Checkpoints(run_key(params, [train_path, test_path], device), params.train.checkpoint_every, here)
    binarized = params.data.binarize
    train_x = training_images(train_path, device, drawn_once=binarized == "static")
    test_x, test_labels = training_images(test_path, device, drawn_once=binarized != "none"), load_split(test_path)[1]
    live = LiveCurves(PLOTS / "training.csv", METRICS / "train.json")
    try:
        model, history = fit(params, train_x, test_x, on_epoch=live, checkpoints=checkpoints)
    except BaseException as stop:
        live.discard()
        if isinstance(stop, Interrupted) and checkpoints.saved_epoch is not None:
            raise Interrupted(f"{str(stop).partition(':')[0]}: nothing was written but the checkpoint of epoch "
                              f"{checkpoints.saved_epoch}; run `dvc repro` to resume from it") from None
        raise
    save_snapshots(SNAPSHOTS, history.codes, test_labels)
    save_model(MODEL, model, {"beta": params.trained_beta, "binarize": params.data.binarize})
    write_json(MACHINE, {"machine": here} | (
        {"resumed_across_machines": history.resumed_across} if history.resumed_across else {}))
    checkpoints.remove()


if __name__ == "__main__":
    run_stage(main)
