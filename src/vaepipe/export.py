"""The trained model as two ONNX files, encoder (x → μ, log σ²) and decoder (z → the
picture the figures show: the mean of p(x|z)), each checked against PyTorch as written.

Exported with torch.onnx's TorchScript exporter: for four linear layers it is exact and
takes 0.1 s, where the torch.export-based one imports torch._dynamo and onnxscript. The
hyper-parameters travel in each file's metadata, so a reader needs nothing else.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn

from vaepipe.atomic import atomic_path
from vaepipe.errors import UserError
from vaepipe.layout import PIXELS
from vaepipe.loss import decoded_mean
from vaepipe.model import VAE, hyperparameters

TOLERANCE = 1e-5  # largest |onnxruntime − torch| allowed, per output value
OPSET = 17


class Encoder(nn.Module):
    def __init__(self, model: VAE):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.encode(x)


class Decoder(nn.Module):
    def __init__(self, model: VAE):
        super().__init__()
        self.model = model

    def forward(self, z):
        # e^t − 1 for expm1, which ONNX lacks: for |l| ≥ ½, where the mean uses it, the two
        # differ by less than 1e-7
        return decoded_mean(self.model.decode_logits(z), self.model.likelihood, expm1=lambda t: torch.exp(t) - 1)


def parts(model: VAE) -> dict[str, tuple[nn.Module, torch.Tensor, list[str], list[str]]]:
    """name → (module, an example input, input names, output names)."""
    return {"encoder": (Encoder(model), torch.zeros(1, PIXELS), ["x"], ["mu", "logvar"]),
            "decoder": (Decoder(model), torch.zeros(1, model.d), ["z"], ["x_mean"])}


def onnx_bytes(module: nn.Module, example: torch.Tensor, inputs: list[str], outputs: list[str],
               metadata: dict) -> bytes:
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notice that a newer one exists
        torch.onnx.export(module.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=inputs, output_names=outputs,
                          dynamic_axes={name: {0: "batch"} for name in inputs + outputs})
    graph = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=str(value))
    return graph.SerializeToString()


def check_against_torch(name: str, data: bytes, module: nn.Module, example: torch.Tensor, seed: int = 0) -> float:
    """Run 64 inputs through onnxruntime and torch; the largest difference, or a one-line
    error naming the file when it is above TOLERANCE (or the file is not a model)."""
    import onnxruntime

    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(64, example.shape[1], generator=generator)
    if name == "decoder":
        inputs = torch.randn(64, example.shape[1], generator=generator) * 2
    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    except Exception as error:  # onnxruntime raises its own types for a broken file
        raise UserError(f"{name}.onnx: onnxruntime cannot run it ({str(error).splitlines()[0][:120]}); "
                        "run `dvc repro export --force`") from None
    with torch.no_grad():
        expected = module.model.encode(inputs) if name == "encoder" else module.model.decode(inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    worst = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))
    if not worst <= TOLERANCE:
        raise UserError(f"{name}.onnx: differs from the PyTorch model by {worst:.3g} (more than "
                        f"{TOLERANCE:g}); the file is not this model: run `dvc repro export --force`")
    return worst


def export(model: VAE, folder, extra: dict) -> dict[str, float]:
    """encoder.onnx and decoder.onnx in `folder`, each checked; their largest differences."""
    metadata = {**hyperparameters(model), **extra}
    found = {}
    with atomic_path(folder, directory=True) as tmp:
        for name, (module, example, inputs, outputs) in parts(model).items():
            data = onnx_bytes(module, example, inputs, outputs, metadata)
            found[name] = check_against_torch(name, data, module, example)
            (tmp / f"{name}.onnx").write_bytes(data)
    return found


def check_files(model: VAE, folder) -> dict[str, float]:
    """Check ONNX files already written against the model (a tampered file fails)."""
    from pathlib import Path
    return {name: check_against_torch(name, (Path(folder) / f"{name}.onnx").read_bytes(), module, example)
            for name, (module, example, _, _) in parts(model).items()}
