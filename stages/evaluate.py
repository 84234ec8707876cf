"""Stage evaluate: metrics/eval.json, plots/kl_per_dim.csv and plots/rate_distortion.csv."""

import torch

from vaepipe.atomic import write_csv, write_json
from vaepipe.evaluation.classifier import load_classifier, sample_quality, scoring_needs
from vaepipe.stage import require, run_stage
from vaepipe.data.splits import as_modelled, load_split, split_length
from vaepipe.evaluation.metrics import bound_needs, test_report
from vaepipe.model.vae import footprint, load_model
from vaepipe.outputs import CLASSIFIER, METRICS, MODEL, PLOTS, normalized
from vaepipe.resources import check_fits
from vaepipe.model.device import pick_device


def main(params):
    device = pick_device(params.train.device)
    model, hparams = load_model(require(MODEL, "train"), device)
    classifier = load_classifier(require(CLASSIFIER, "classifier"), device)
    test_path = require(normalized("test"), "normalize")
    check_fits(bound_needs(footprint(model))
               | scoring_needs(params.evaluate.fd_samples, hparams["d"], split_length(test_path)), device)
    test_x = load_split(test_path)[0].to(device)
    generator = torch.Generator(device).manual_seed(params.seed)
    report, kl = test_report(model, hparams, as_modelled(test_x, "test", hparams["binarize"]),
                             generator=generator,
                             elbo_samples=params.evaluate.elbo_samples,
                             iw_samples=params.evaluate.iw_samples)
    # its own stream: changing the bound's k or the ELBO's draws never changes samples.fd
    prior = model.prior_codes(params.evaluate.fd_samples, torch.Generator(device).manual_seed(params.seed + 1))
    scores = {} if classifier is None else {"samples": sample_quality(classifier, model, test_x, prior)}
    write_csv(PLOTS / "kl_per_dim.csv", [{"dim": u, "kl": value} for u, value in enumerate(kl.tolist())])
    # one point per run: `dvc plots diff` over a β sweep's experiments draws the curve
    write_csv(PLOTS / "rate_distortion.csv", [{"beta": hparams["beta"], "rate": report["kl"],
                                               "distortion": report["recon"]}])
    write_json(METRICS / "eval.json", {"test": report, **scores})


if __name__ == "__main__":
    run_stage(main)
