"""Stage generate: plots/samples.png, plots/reconstructions.png and plots/morph.png."""

from vaepipe.stage import require, run_stage
from vaepipe.data.splits import as_modelled, load_split
from vaepipe.layout import class_names
from vaepipe.figures.generation import generate_figures, generate_needs
from vaepipe.model.vae import footprint, load_model
from vaepipe.outputs import CLASSES, MODEL, PLOTS, normalized
from vaepipe.resources import check_fits


def main(params):
    model, hparams = load_model(require(MODEL, "train"))
    check_fits(generate_needs(footprint(model), params.generate, model.pixels))
    test_x, test_labels = load_split(require(normalized("test"), "normalize"))
    seen = as_modelled(test_x, "test", hparams["binarize"])
    generate_figures(model, seen, test_labels, class_names(CLASSES), params.generate, params.seed, PLOTS)


if __name__ == "__main__":
    run_stage(main)
