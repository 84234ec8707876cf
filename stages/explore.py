"""Stage explore: explorer/, a static page that runs this run's model in the browser
(`make explore` serves it on 127.0.0.1)."""

import dataclasses

from vaepipe.stage import require, run_stage
from vaepipe.explorer.build import build, read_json
from vaepipe.params import dotted
from vaepipe.layout import class_names
from vaepipe.outputs import CLASSES, EXPLORER, METRICS, MIXTURE, ONNX, PLOTS, SNAPSHOTS, normalized
from vaepipe.training.snapshots import last_epoch, load_snapshot
from vaepipe.data.tensorfile import read_tensors

# what the run is (not where its data came from or where it ran): the stage's params in dvc.yaml
SHOWN_PARAMS = ("seed", "d", "beta", "epochs", "model", "hidden", "activation", "arch", "data.dataset", "data.channels",
                "data.binarize", "train.batch_size", "train.lr", "train.warmup_epochs", "train.likelihood",
                "project.method")
SHOWN_METRICS = ("test.loss", "test.recon", "test.kl", "test.iw_nll", "test.bits_per_dim", "test.likelihood",
                 "test.active_units",
                 "samples.fd", "samples_gmm.fd", "train.loss")


def main(params):
    folder = require(SNAPSHOTS, "train")
    mu = load_snapshot(folder, last_epoch(folder))["mu"]
    test_x = read_tensors(require(normalized("test"), "normalize"), "normalize")["images"]
    values = dotted(dataclasses.asdict(params))
    metrics = {}
    for name in ("train", "eval", "latent"):
        metrics.update(dotted(read_json(require(METRICS / f"{name}.json", "evaluate"))))
    build(EXPLORER, encoder=require(ONNX / "encoder.onnx", "export"), decoder=require(ONNX / "decoder.onnx", "export"),
          test_x=test_x, mu=mu, projection_csv=require(PLOTS / "projection.csv", "project"),
          kl_csv=require(PLOTS / "kl_per_dim.csv", "evaluate"), mixture=read_json(require(MIXTURE, "latent")),
          params={key: values[key] for key in SHOWN_PARAMS},
          metrics={key: metrics[key] for key in SHOWN_METRICS if key in metrics}, classes=class_names(CLASSES))
    print(f"wrote {EXPLORER}/: `make explore` serves it on 127.0.0.1")


if __name__ == "__main__":
    run_stage(main)
