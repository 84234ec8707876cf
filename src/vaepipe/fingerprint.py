"""The machine a run's bits depend on: its fingerprint.

Floating-point sums are not associative, so the same code and seed give other bits where
the order of the arithmetic changes: PyTorch's vector kernels (AVX2 adds 8 floats at a time,
AVX-512 16), MKL's and oneDNN's code paths for the CPU they find, the number of threads a
sum is split over, the libraries' versions, and on a GPU the card and CUDA/cuDNN. The train
stage writes this fingerprint to metrics/machine.json beside the run (not into the model,
whose bytes then stay equal wherever its bits are), and a checkpoint carries it, so that a
claim of "the same bits" is made only between runs with the same fingerprint
(docs/reproducibility.md).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re

# environment variables that change which code paths the libraries take, hence the bits
BIT_SETTINGS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE",
                "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def cpu_info() -> dict:
    """The first CPU's model, cache size and instruction-set flags (a digest): a virtual
    machine may call two CPUs "AMD EPYC" whose caches and flags differ, and oneDNN and MKL
    choose their kernels and blockings by those."""
    found = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key in ("model name", "cache size", "flags") and key not in found:
                    found[key] = value
    except OSError:
        pass
    return {"cpu": found.get("model name") or platform.processor() or platform.machine(),
            "cache": found.get("cache size", "unknown"),
            "flags": hashlib.sha256(found.get("flags", "").encode()).hexdigest()[:12]}


def _built_with(pattern: str) -> str:
    import torch

    found = re.search(pattern, torch.__config__.show())
    return found.group(1).strip() if found else "none"


def machine(device=None) -> dict:
    """What decides the bits of a run on `device` (the CPU when None), as strings and numbers."""
    import numpy as np
    import torch

    found = {"isa": torch.backends.cpu.get_cpu_capability(), **cpu_info(), "threads": torch.get_num_threads(),
             "torch": str(torch.__version__), "numpy": np.__version__,  # TorchVersion: a str subclass
             "mkl": _built_with(r"Math Kernel Library Version ([^\n]+?) for"),
             "onednn": _built_with(r"MKL-DNN (v[\d.]+)"), "device": "cpu"}
    if device is not None and torch.device(device).type == "cuda":
        found |= {"device": "cuda", "gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                  "cudnn": str(torch.backends.cudnn.version())}
    settings = {name: os.environ[name] for name in BIT_SETTINGS if os.environ.get(name)}
    if settings:
        found["settings"] = " ".join(f"{name}={value}" for name, value in sorted(settings.items()))
    return found


def differences(here: dict, there: dict) -> list[str]:
    """What differs between two fingerprints, as `key: here's value vs there's`."""
    return [f"{key}: {here.get(key, 'unset')} vs {there.get(key, 'unset')}"
            for key in sorted(set(here) | set(there)) if here.get(key) != there.get(key)]
