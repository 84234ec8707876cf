"""Stage evaluate: metrics/eval.json and plots/kl_per_dim.csv for the trained model."""

import torch

from vaepipe.atomic import write_csv, write_json
from vaepipe.classifier import load_classifier, sample_quality
from vaepipe.cli import require, run_stage
from vaepipe.data import load_split, split_length
from vaepipe.metrics import test_report
from vaepipe.model import load_model
from vaepipe.paths import CLASSIFIER, METRICS, MODEL, PLOTS, normalized
from vaepipe.resources import check_fits, evaluate_needs
from vaepipe.train import pick_device


def main(params):
    device = pick_device(params.train.device)
    model, hparams = load_model(require(MODEL, "train"), device)
    classifier = load_classifier(require(CLASSIFIER, "classifier"), device)
    test_path = require(normalized("test"), "normalize")
    check_fits(evaluate_needs(hparams["d"], params.evaluate.fd_samples, split_length(test_path)), device)
    test_x = load_split(test_path)[0].to(device)
    generator = torch.Generator(device).manual_seed(params.seed)
    report, kl = test_report(model, hparams, test_x, generator=generator,
                             elbo_samples=params.evaluate.elbo_samples,
                             iw_samples=params.evaluate.iw_samples)
    samples = sample_quality(classifier, model, test_x, params.evaluate.fd_samples, generator)
    write_csv(PLOTS / "kl_per_dim.csv", [{"dim": u, "kl": value} for u, value in enumerate(kl.tolist())])
    write_json(METRICS / "eval.json", {"test": report, "samples": samples})


if __name__ == "__main__":
    run_stage(main)
