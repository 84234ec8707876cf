"""Stage generate: plots/samples.png, plots/reconstructions.png and plots/morph.png."""

from vaepipe.cli import require, run_stage
from vaepipe.data import load_split
from vaepipe.figures import generate_figures
from vaepipe.model import load_model
from vaepipe.paths import MODEL, PLOTS, normalized


def main(params):
    model, _ = load_model(require(MODEL, "train"))
    test_x, test_labels = load_split(require(normalized("test"), "normalize"))
    generate_figures(model, test_x, test_labels, params.generate, params.seed, PLOTS)


if __name__ == "__main__":
    run_stage(main)
