"""Stage evaluate: metrics/eval.json and plots/kl_per_dim.csv for the trained model."""

import torch

from vaepipe.atomic import write_csv, write_json
from vaepipe.cli import require, run_stage
from vaepipe.data import load_split
from vaepipe.metrics import test_report
from vaepipe.model import load_model
from vaepipe.paths import METRICS, MODEL, PLOTS, normalized
from vaepipe.train import pick_device


def main(params):
    device = pick_device(params.train.device)
    model, hparams = load_model(require(MODEL, "train"), device)
    test_x, _ = load_split(require(normalized("test"), "normalize"))
    generator = torch.Generator(device).manual_seed(params.seed)
    report, kl = test_report(model, hparams, test_x.to(device), generator=generator,
                             elbo_samples=params.evaluate.elbo_samples,
                             iw_samples=params.evaluate.iw_samples)
    write_csv(PLOTS / "kl_per_dim.csv", [{"dim": u, "kl": value} for u, value in enumerate(kl.tolist())])
    write_json(METRICS / "eval.json", {"test": report})


if __name__ == "__main__":
    run_stage(main)
