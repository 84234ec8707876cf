"""params.yaml loaded into typed, validated values.

Every key of params.yaml is declared once here, with what it allows. A wrong value stops
the stage with exit code 2 and one line naming the key (see `vaepipe.cli`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vaepipe.errors import ParamsError

PARAMS_FILE = "params.yaml"


def number(*, minimum=None, above=None, maximum=None):
    """A field whose value must lie in a range; the range is named in the error."""
    return field(metadata={"minimum": minimum, "above": above, "maximum": maximum})


def one_of(*choices):
    return field(metadata={"choices": choices})


@dataclass(frozen=True)
class Data:
    dataset: str = one_of("mnist", "fashion-mnist", "custom")
    # null = the official mirrors; else a URL or folder, or a list of them tried in turn
    mirror: str | list[str] | None
    timeout: float = number(above=0)


@dataclass(frozen=True)
class Train:
    batch_size: int = number(minimum=1)
    lr: float = number(above=0)
    likelihood: str = one_of("bernoulli", "gaussian")
    device: str = one_of("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Evaluate:
    elbo_samples: int = number(minimum=1)
    iw_samples: int = number(minimum=1)
    fd_samples: int = number(minimum=2)


@dataclass(frozen=True)
class Morph:
    start: int = number(minimum=0, maximum=9)
    end: int = number(minimum=0, maximum=9)
    steps: int = number(minimum=2)


@dataclass(frozen=True)
class Generate:
    samples: int = number(minimum=1)
    reconstructions: int = number(minimum=1)
    morph: Morph


@dataclass(frozen=True)
class Project:
    epochs: list[int]
    method: str = one_of("tsne", "pca")
    points: int = number(minimum=2)
    bubbles: int = number(minimum=0)


@dataclass(frozen=True)
class Classifier:
    seed: int = number(minimum=0)
    epochs: int = number(minimum=1)
    batch_size: int = number(minimum=1)
    lr: float = number(above=0)


@dataclass(frozen=True)
class Params:
    seed: int = number(minimum=0)
    d: int = number(minimum=1)
    beta: float = number(minimum=0)
    epochs: int = number(minimum=1)
    model: str = one_of("vae", "ae")
    data: Data
    train: Train
    evaluate: Evaluate
    generate: Generate
    project: Project
    classifier: Classifier

    @property
    def kl_weight(self) -> float:
        """β for the VAE; 0 for the classic AE, which is the VAE without the KL term."""
        return self.beta if self.model == "vae" else 0.0

    @property
    def variational(self) -> bool:
        return self.model == "vae"


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run from the project root, where params.yaml lives")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path} is not valid YAML{where}: fix its syntax") from None
    params = _build(Params, raw, "")
    for epoch in params.project.epochs:
        if epoch > params.epochs:
            raise ParamsError(
                f"project.epochs: epoch {epoch} is after the last training epoch "
                f"(epochs: {params.epochs}); use values from 0 to {params.epochs}")
    if params.data.mirror == []:
        raise ParamsError("data.mirror: an empty list; use null for the official mirrors, "
                          "or list at least one URL or folder")
    if params.data.dataset == "custom" and params.data.mirror is None:
        raise ParamsError("data.mirror: dataset 'custom' needs a mirror; "
                          "set it to a URL or folder holding the four IDX .gz files")
    return params


def _build(cls, raw, prefix: str):
    """Check `raw` against the dataclass `cls`, recursively, naming the first bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{prefix.rstrip('.') or 'params.yaml'}: must be a mapping of "
                          f"{', '.join(f.name for f in dataclasses.fields(cls))}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            raise ParamsError(f"{prefix}{key}: unknown key; allowed here: {', '.join(fields)}")
    values = {}
    for name, spec in fields.items():
        key = prefix + name
        if name not in raw:
            raise ParamsError(f"{key}: missing; add it to params.yaml ({_allowed(hints[name], spec)})")
        values[name] = _check(raw[name], hints[name], spec, key)
    return cls(**values)


def _check(value, hint, spec, key):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if not _has_type(value, hint):
        raise ParamsError(f"{key}: must be {_allowed(hint, spec)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"{key}: must be a finite number, got {value!r}")
    meta = spec.metadata
    if "choices" in meta and value not in meta["choices"]:
        raise ParamsError(f"{key}: must be {_allowed(hint, spec)}, got {value!r}")
    too_low = ((meta.get("minimum") is not None and value < meta["minimum"])
               or (meta.get("above") is not None and value <= meta["above"]))
    too_high = meta.get("maximum") is not None and value > meta["maximum"]
    if too_low or too_high:
        raise ParamsError(f"{key}: must be {_allowed(hint, spec)}, got {value!r}")
    if hint == list[int]:
        if not value or any(v < 0 for v in value) or len(set(value)) != len(value):
            raise ParamsError(f"{key}: must be a non-empty list of distinct epochs >= 0, got {value!r}")
        return sorted(value)
    return float(value) if hint is float else value


def _has_type(value, hint) -> bool:
    if isinstance(value, bool):  # YAML's yes/no must not pass for 1/0
        return False
    if isinstance(hint, types.UnionType):
        return any(_has_type(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float))
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_has_type(v, item) for v in value)
    return isinstance(value, hint)


def _allowed(hint, spec) -> str:
    meta = spec.metadata
    if "choices" in meta:
        return "one of " + ", ".join(meta["choices"])
    kind = {int: "an integer", float: "a number", str: "a string"}.get(hint)
    if kind is None:
        return {list[int]: "a list of epochs",
                str | list[str] | None: "null, a URL or folder, or a list of them"}.get(hint, "a mapping")
    bounds = []
    if meta.get("minimum") is not None:
        bounds.append(f">= {meta['minimum']}")
    if meta.get("above") is not None:
        bounds.append(f"> {meta['above']}")
    if meta.get("maximum") is not None:
        bounds.append(f"<= {meta['maximum']}")
    return " ".join([kind, " and ".join(bounds)]).strip()
