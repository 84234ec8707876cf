"""Stage latent: figure 4 with the model in it, traversals, the 2-D manifold, and the prior
hole (samples of a mixture fitted to the posterior means, scored like prior samples)."""

import torch

from vaepipe.atomic import write_csv, write_json
from vaepipe.evaluation.classifier import load_classifier, sample_quality, scoring_needs
from vaepipe.stage import require, run_stage
from vaepipe.data.splits import as_modelled, first_images, load_split, split_length, unit
from vaepipe.figures.style import sample_columns, save_digit_figure, tile
from vaepipe.figures.latent import (by_kl, dimension_stats, fit_mixture, latent_needs, mixture_record, sample_mixture,
                            save_kl_figure, save_manifold_figure, save_traversal_figure, traversal_images)
from vaepipe.evaluation.metrics import encode_all
from vaepipe.model.vae import footprint, load_model
from vaepipe.outputs import CLASSIFIER, METRICS, MIXTURE, MODEL, PLOTS, normalized
from vaepipe.resources import check_fits


def main(params):
    options = params.latent
    model, hparams = load_model(require(MODEL, "train"))
    classifier = load_classifier(require(CLASSIFIER, "classifier"))
    train_path, test_path = (require(normalized(split), "normalize") for split in ("train", "test"))
    check_fits(latent_needs(footprint(model), model.d, options, split_length(train_path), model.pixels)
               | scoring_needs(params.evaluate.fd_samples, model.d, split_length(test_path)))
    test_x = load_split(test_path)[0]
    seen = as_modelled(test_x, "test", hparams["binarize"])
    stats = dimension_stats(*encode_all(model, seen))
    write_csv(PLOTS / "posterior_variance.csv", [{key: row[key] for key in ("dim", "variance", "v", "mu2")}
                                                 for row in stats])
    save_kl_figure(PLOTS / "kl_variance.png", stats)

    rows = by_kl(stats, options.traversal_dims)
    images = traversal_images(model, unit(seen[:options.traversal_images]), [row["dim"] for row in rows],
                              options.traversal_steps)
    save_traversal_figure(PLOTS / "traversals.png", images, rows)
    top = sorted(row["dim"] for row in by_kl(stats, 2)) if model.d >= 2 else [0, 0]
    save_manifold_figure(PLOTS / "manifold.png", model, tuple(top), options.manifold_steps)

    # half of MNIST fits as well, twice as fast; the images are let go once encoded
    fitted = first_images(train_path, options.gmm_images)
    train_mu, _ = encode_all(model, as_modelled(fitted, "train", hparams["binarize"]))
    del fitted
    mixture = fit_mixture(train_mu.double().numpy(), options.gmm_components, params.seed)
    write_json(MIXTURE, mixture_record(mixture))
    z = sample_mixture(mixture, params.evaluate.fd_samples, torch.Generator().manual_seed(params.seed))
    shown = params.generate.samples
    with torch.no_grad():
        save_digit_figure(PLOTS / "gmm_samples.png", tile(model.decode(z[:shown]), sample_columns(shown)),
                          f"Decodings of z from a {options.gmm_components}-component mixture "
                          "fitted to the training set's μ")
    scored = {} if classifier is None else sample_quality(classifier, model, test_x, z)
    write_json(METRICS / "latent.json", {"samples_gmm": scored})


if __name__ == "__main__":
    run_stage(main)
