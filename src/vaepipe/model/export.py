"""The trained model as two ONNX files, encoder (x → μ, log σ²) and decoder (z → the
picture the figures show: the mean of p(x|z)), each checked against PyTorch as written.

Exported with torch.onnx's TorchScript exporter: for the networks of every architecture
(linear and convolutional layers) it is exact and quick, where the torch.export-based one
imports torch._dynamo and onnxscript. The hyper-parameters travel in each file's metadata,
so a reader needs nothing else.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vaepipe.atomic import atomic_path
from vaepipe.errors import UserError
from vaepipe.model.loss import decoded_mean
from vaepipe.model.vae import VAE, hyperparameters

TOLERANCE = 1e-5  # largest |onnxruntime − torch| allowed, per output value
OPSET = 17


class Decoder(nn.Module):
    """z → the mean of p(x|z), with e^t − 1 for expm1, which ONNX lacks: for |l| ≥ ½, where
    the continuous Bernoulli's mean uses it, the two differ by less than 1e-7."""

    def __init__(self, model: VAE):
        super().__init__()
        self.model = model

    def forward(self, z):
        return decoded_mean(self.model.decode_logits(z), self.model.likelihood, expm1=lambda t: torch.exp(t) - 1)


class Encoder(nn.Module):
    def __init__(self, model: VAE):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.encode(x)


@dataclass(frozen=True)
class Part:
    module: nn.Module        # what is exported
    reference: Callable      # what it must agree with: the model's own encode or decode
    width: int               # input features
    inputs: list[str]
    outputs: list[str]

    def sample_inputs(self, count: int = 64, seed: int = 0) -> torch.Tensor:
        """Pixels in [0, 1] for the encoder, codes ~ N(0, 4) for the decoder (wide enough to
        reach both branches of the continuous Bernoulli's mean)."""
        generator = torch.Generator().manual_seed(seed)
        if self.inputs == ["x"]:
            return torch.rand(count, self.width, generator=generator)
        return torch.randn(count, self.width, generator=generator) * 2


def parts(model: VAE) -> dict[str, Part]:
    return {"encoder": Part(Encoder(model), model.encode, model.pixels, ["x"], ["mu", "logvar"]),
            "decoder": Part(Decoder(model), model.decode, model.d, ["z"], ["x_mean"])}


def onnx_bytes(part: Part, metadata: dict) -> bytes:
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notice that a newer one exists
        torch.onnx.export(part.module.eval(), (torch.zeros(1, part.width),), buffer, dynamo=False,
                          opset_version=OPSET, input_names=part.inputs, output_names=part.outputs,
                          dynamic_axes={name: {0: "batch"} for name in part.inputs + part.outputs})
    graph = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=json.dumps(value) if isinstance(value, dict) else str(value))
    return graph.SerializeToString()


def check_against_torch(name: str, data: bytes, part: Part) -> float:
    """Run 64 inputs through onnxruntime and torch; the largest difference, or a one-line
    error naming the file when it is above TOLERANCE (or the file is not a model)."""
    import onnxruntime

    inputs = part.sample_inputs()
    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = session.run(None, {part.inputs[0]: inputs.numpy()})
    except Exception as error:  # onnxruntime raises its own types for a broken file
        raise UserError(f"{name}.onnx: onnxruntime cannot run it ({str(error).splitlines()[0][:120]}); "
                        "run `dvc repro export --force`") from None
    with torch.no_grad():
        expected = part.reference(inputs)
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
        for name, part in parts(model).items():
            data = onnx_bytes(part, metadata)
            found[name] = check_against_torch(name, data, part)
            (tmp / f"{name}.onnx").write_bytes(data)
    return found


