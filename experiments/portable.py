"""Where the bits of two code paths part, and what pinning one path costs: the first training
step of params.yaml's model on the whole MNIST, tensor by tensor, and then whole epochs,
each setting in a process of its own (the libraries read their settings once, at start-up):

- plain: what this machine picks (its ISA for ATen, MKL's and oneDNN's own dispatch);
- ATEN_CPU_CAPABILITY=default: ATen's scalar kernels, the same code on every x86-64 CPU;
- MKL_CBWR=COMPATIBLE: MKL's conditional numerical reproducibility, its SSE2 code path;
- both, with ONEDNN_MAX_CPU_ISA=SSE41: the candidate for a portable mode.

Prints, for each setting against plain, the first tensor of the step (in the order it is
computed) whose bits differ, the model's MD5 after the epochs, and the epoch time's ratio.

    python experiments/portable.py [--mnist FOLDER] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

SETTINGS = {
    "plain": {},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "mkl-compatible": {"MKL_CBWR": "COMPATIBLE"},
    "portable": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}

ONE_SETTING = """
import hashlib, json, sys, time
import numpy as np, torch
from pathlib import Path
from vaepipe.backprop import forward, loss_and_gradients, reconstruction_and_gradient
from vaepipe.data import unit
from vaepipe.fingerprint import machine
from vaepipe.idx import read_split
from vaepipe.params import load_params
from vaepipe.train import start_run, train_epoch
mnist, out, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
params = load_params(sys.argv[4])
x = torch.from_numpy(read_split(Path(mnist), "train")[0])
run = start_run(params, x.shape[1], torch.device("cpu"))
model, batch = run.model, unit(x[:params.train.batch_size])
steps = {}
encoder, decoder = list(model.encoder), list(model.to_logits)
for i, value in enumerate(forward(encoder, batch)[1:]):
    steps[f"encoder layer {i} ({type(encoder[i]).__name__})"] = value
mu, logvar = model.split_code(steps[f"encoder layer {len(encoder) - 1} ({type(encoder[-1]).__name__})"])
torch.manual_seed(0)
z, eps, std = model.draw_code(mu, logvar)
steps["std = exp(logvar / 2)"], steps["z"] = std, z
for i, value in enumerate(forward(decoder, z)[1:]):
    steps[f"decoder layer {i} ({type(decoder[i]).__name__})"] = value
recon, grad = reconstruction_and_gradient(value, batch, params.train.likelihood)
steps["reconstruction (BCE on logits)"], steps["its gradient"] = recon.reshape(1), grad
torch.manual_seed(0)
model.train()
loss_and_gradients(model, batch, beta=params.trained_beta, likelihood=params.train.likelihood)
for name, parameter in model.named_parameters():
    steps[f"gradient of {name}"] = parameter.grad
times = []
for epoch in range(1, epochs + 1):
    start = time.perf_counter()
    train_epoch(model, run.optimizer, x, epoch=epoch, batch_size=params.train.batch_size, beta=params.trained_beta,
                likelihood=params.train.likelihood, generator=run.order, progress=False)
    times.append(time.perf_counter() - start)
digest = hashlib.md5(b"".join(t.detach().numpy().tobytes() for t in model.state_dict().values())).hexdigest()
np.savez(out, **{name: value.detach().numpy() for name, value in steps.items()})
print(json.dumps({"order": list(steps), "md5": digest, "seconds": min(times), "isa": machine()["isa"]}))
"""


def main() -> None:
    from support import parse_with_mnist

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parse_with_mnist(parser)
    import numpy as np

    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings in SETTINGS.items():
            env = {k: v for k, v in os.environ.items() if k not in SETTINGS["portable"]} | settings
            env["PYTHONPATH"] = str(ROOT / "src")
            done = subprocess.run([sys.executable, "-c", ONE_SETTING, str(args.mnist), f"{tmp}/{name}.npz",
                                   str(args.epochs), str(ROOT / "params.yaml")], env=env, capture_output=True,
                                  text=True)
            if done.returncode != 0:
                raise SystemExit(f"{name}: {done.stderr[-2000:]}")
            found[name] = json.loads(done.stdout.strip().splitlines()[-1]) | {"tensors": np.load(f"{tmp}/{name}.npz")}
        plain = found["plain"]
        print(f"# plain: isa {plain['isa']}, an epoch {plain['seconds']:.2f} s, model md5 {plain['md5'][:8]}")
        for name, result in found.items():
            if name == "plain":
                continue
            first = next((step for step in plain["order"]
                          if plain["tensors"][step].tobytes() != result["tensors"][step].tobytes()), None)
            where = "none: every tensor of the step is bit-identical" if first is None else (
                f"{first} (largest difference "
                f"{np.abs(plain['tensors'][first] - result['tensors'][first]).max():.3g})")
            print(f"{name}: isa {result['isa']}; first difference from plain: {where}; model md5 {result['md5'][:8]}"
                  f" ({'same' if result['md5'] == plain['md5'] else 'other'} bits); epoch time "
                  f"{result['seconds'] / plain['seconds']:.2f}x plain")


if __name__ == "__main__":
    main()
