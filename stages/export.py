"""Stage export: models/onnx/{encoder,decoder}.onnx, each checked against PyTorch."""

from vaepipe.stage import require, run_stage
from vaepipe.model.export import TOLERANCE, export
from vaepipe.model.vae import load_model
from vaepipe.outputs import MODEL, ONNX


def main(params):
    model, hparams = load_model(require(MODEL, "train"))
    worst = export(model, ONNX, {"binarize": hparams["binarize"]})
    print(f"wrote {ONNX}/encoder.onnx and decoder.onnx; onnxruntime agrees with torch within "
          f"{max(worst.values()):.1e} (allowed {TOLERANCE:g})")


if __name__ == "__main__":
    run_stage(main)
