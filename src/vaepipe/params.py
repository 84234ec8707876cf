"""params.yaml loaded into typed, validated values.

Every key of params.yaml is declared once here, with what it allows. A wrong value stops
the stage with exit code 2 and one line naming the key (see `vaepipe.stage`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import reprlib
import subprocess
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vaepipe.errors import ParamsError
from vaepipe.layout import FILES
from vaepipe.outputs import OUTPUT_FOLDERS

PARAMS_FILE = "params.yaml"
MAX_WIDTH = 1 << 16  # units in one hidden layer
MAX_IW_SAMPLES = 100_000  # papers use k ≤ 5000; far beyond, the bound would run for days


def dotted(tree: dict, prefix: str = "") -> dict:
    """Nested params or metrics by the names dvc gives them: {"train": {"lr": 1e-3}} ->
    {"train.lr": 1e-3}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= dotted(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


class ParamsLoader(yaml.SafeLoader):
    """YAML as a user means it: `1e-3` is a number (YAML 1.2; PyYAML's 1.1 reads a string),
    and a key written twice is an error instead of the last one silently winning."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ParamsError(f"{shown(key, quote=False)}: written twice in params.yaml (lines {seen[key]} and "
                                  f"{line}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep)


ParamsLoader.add_implicit_resolver(  # YAML 1.2's floats: a dot is optional before the exponent
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 40, 40, 4, 4, 2


def shown(value, *, quote: bool = True) -> str:
    """A bad value as an error quotes it: at most about 60 characters, however large the
    value (a few YAML aliases make a 3 KB file into megabytes of nested lists)."""
    text = _SHORT.repr(value) if quote or not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def number(*, minimum=None, above=None, maximum=None):
    """A field whose value must lie in a range; the range is named in the error."""
    return field(metadata={"minimum": minimum, "above": above, "maximum": maximum})


def one_of(*choices):
    return field(metadata={"choices": choices})


@dataclass(frozen=True)
class DataParams:
    dataset: str = one_of("mnist", "fashion-mnist", "custom", "folder")
    # null = the official mirrors; else a URL or folder, or a list of them tried in turn
    mirror: str | list[str] | None
    timeout: float = number(above=0)
    deadline: float = number(above=0)  # seconds for the whole download, every mirror tried
    verify: bool  # custom data: false uses files with no checksum (never the default)
    sha256: dict[str, str] | None  # custom data: each file's SHA-256, pinned here
    binarize: str = one_of("none", "dynamic", "static")
    path: str  # dataset folder: the folder of images (a dependency of the normalize stage)
    side: int = number(minimum=4, maximum=512)  # dataset folder: images become side × side
    test_fraction: float = number(above=0, maximum=0.9)  # dataset folder without train/ and test/
    channels: int = one_of(1, 3)  # dataset folder: 1 grey, 3 colour (RGB)


LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "discretized", "gaussian")


@dataclass(frozen=True)
class TrainParams:
    batch_size: int = number(minimum=1)
    lr: float = number(above=0)
    warmup_epochs: int = number(minimum=0)
    likelihood: str = one_of(*LIKELIHOODS)
    device: str = one_of("auto", "cpu", "cuda")
    adam_eps: float = number(above=0)  # Adam's ε: 1e-8 (PyTorch's), 1e-4 in Burda et al.
    schedule: str = one_of("constant", "burda")  # burda: 3^i passes at lr · 10^(−i/7), i = 0…7
    checkpoint_every: int = number(minimum=0)  # epochs between checkpoints (vaepipe.training.checkpoint); 0 = none
    resume_across_machines: bool  # resume a checkpoint made under another machine fingerprint


@dataclass(frozen=True)
class EvaluateParams:
    elbo_samples: int = number(minimum=1)
    iw_samples: int = number(minimum=1, maximum=MAX_IW_SAMPLES)
    fd_samples: int = number(minimum=2)


@dataclass(frozen=True)
class MorphParams:
    start: int = number(minimum=0)  # a label (a test image's number when unlabelled)
    end: int = number(minimum=0)
    steps: int = number(minimum=2)


@dataclass(frozen=True)
class GenerateParams:
    samples: int = number(minimum=1)
    reconstructions: int = number(minimum=1)
    morph: MorphParams


@dataclass(frozen=True)
class ProjectParams:
    epochs: list[int]
    method: str = one_of("tsne", "pca")
    points: int = number(minimum=2)
    bubbles: int = number(minimum=0)


@dataclass(frozen=True)
class LatentParams:
    traversal_images: int = number(minimum=1)
    traversal_dims: int = number(minimum=1)
    traversal_steps: int = number(minimum=2)
    manifold_steps: int = number(minimum=2)
    gmm_components: int = number(minimum=1)
    gmm_images: int = number(minimum=1)


@dataclass(frozen=True)
class ClassifierParams:
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
    hidden: list[int] | None  # the widths of the hidden layers, input side first; null = [d²] (the notes)
    activation: str | None = one_of(None, "relu", "tanh", "leaky_relu")  # null: the architecture's own
    arch: str  # the networks' architecture: a name of vaepipe.model.architectures (the train stage checks it)
    arch_options: dict  # that architecture's own options; each declares them (vaepipe.model.architectures)
    data: DataParams
    train: TrainParams
    evaluate: EvaluateParams
    generate: GenerateParams
    project: ProjectParams
    latent: LatentParams
    classifier: ClassifierParams

    @property
    def trained_beta(self) -> float:
        """β as the loss uses it: `beta` for the VAE, 0 for the classic AE (the VAE without
        the KL term). `train.beta_at` adds the warm-up; training.csv's `beta` column is that."""
        return self.beta if self.model == "vae" else 0.0

    @property
    def variational(self) -> bool:
        return self.model == "vae"



def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run from the project root, where params.yaml lives")
    try:
        raw = yaml.load(path.read_text(), Loader=ParamsLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path} is not valid YAML{where}: fix its syntax") from None
    _refuse_interpolation(raw, f"{path}")
    _refuse_interpolation(committed_params(path), f"{path} as committed (HEAD)")
    params = _build(Params, raw, "")
    _check_mirror(params.data.mirror)
    _check_sha256(params.data.sha256)
    if params.data.dataset == "custom" and params.data.mirror is None:
        raise ParamsError("data.mirror: dataset 'custom' needs a mirror; "
                          "set it to a URL or folder holding the four IDX .gz files")
    if params.data.dataset == "folder" and not params.data.path.strip():
        raise ParamsError("data.path: dataset 'folder' needs the folder of your images; set data.path to it")
    if params.data.channels == 3 and params.data.dataset != "folder":
        raise ParamsError(f"data.channels: 3 (colour) is for a folder of images; {params.data.dataset} "
                          "is grey: set data.channels to 1, or data.dataset to folder")
    _check_data_path(params.data.path, path.parent)
    return params


INTERPOLATION = "${"


def _refuse_interpolation(raw, where: str) -> None:
    """No value or key may hold `${`: DVC applies `dvc exp run -S` through OmegaConf, which
    resolves every `${…}` in params.yaml first, `${oc.env:VAR}` included, and writes the
    result back: a committed `${oc.env:GIT_TOKEN}` in a URL would send the token to its host
    and into the experiment that `dvc exp push` publishes."""
    def texts(node, key):  # (dotted key, text) of every string in the tree, keys included
        if isinstance(node, dict):
            for name, value in node.items():
                inner = f"{key}.{name}" if key else str(name)
                yield inner, name
                yield from texts(value, inner)
        elif isinstance(node, list):
            for value in node:
                yield from texts(value, key)
        else:
            yield key, node

    for key, text in texts(raw, ""):
        if isinstance(text, str) and INTERPOLATION in text:
            raise ParamsError(f"{where}: {shown(key, quote=False)} holds {shown(text)}, an interpolation that "
                              "`dvc exp run -S` resolves (environment variables included) before any stage "
                              "runs; write the value itself")


def committed_params(path: Path) -> dict | None:
    """params.yaml as the checkout's HEAD holds it, parsed; None outside git or with no such
    file there. `dvc exp run -S` resolves interpolations in the workspace's copy before a
    stage starts, so only the committed text still shows them."""
    try:
        shown_file = subprocess.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent or ".",
                                    capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if shown_file.returncode != 0:
        return None
    try:
        return yaml.load(shown_file.stdout, Loader=yaml.SafeLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError:
        return None


def _check_data_path(data_path: str, root: Path) -> None:
    """data.path must not overlap a stage's outputs: DVC deletes those before the stage runs,
    and the images in them were never in its cache. Links are resolved first."""
    images = os.path.realpath(root / data_path)
    for output in OUTPUT_FOLDERS:
        folder = os.path.realpath(root / output)
        if os.path.commonpath([images, folder]) == folder:
            raise ParamsError(f"data.path: {shown(data_path)} lies inside {output}/, a stage's output that DVC "
                              "deletes before the stage runs; keep your images in a folder of their own (e.g. images/)")
        if os.path.commonpath([images, folder]) == images:
            raise ParamsError(f"data.path: {shown(data_path)} holds {output}/, a stage's output that DVC deletes "
                              "before the stage runs; name the folder that holds only your images")


def _check_sha256(pins) -> None:
    for name, digest in (pins or {}).items():
        if name not in FILES:
            raise ParamsError(f"data.sha256: {shown(name)} is not one of the four files ({', '.join(FILES)})")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise ParamsError(f"data.sha256.{name}: must be 64 hex digits (sha256sum prints them), got {shown(digest)}")
    if pins and set(pins) != set(FILES):
        raise ParamsError(f"data.sha256: pins {len(pins)} of the four files; pin all four or none")


def _check_mirror(mirror) -> None:
    if mirror == []:
        raise ParamsError("data.mirror: an empty list; use null for the official mirrors, "
                          "or list at least one URL or folder")
    for entry in [mirror] if isinstance(mirror, str) else mirror or []:
        where = "data.mirror" if isinstance(mirror, str) else f"data.mirror entry {shown(entry)}"
        if not entry.strip():
            raise ParamsError(f"{where}: empty; write a URL (http:// or https://) or a folder")
        scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", entry)
        if scheme and scheme.group(1).lower() not in ("http", "https"):
            raise ParamsError(f"{where}: {scheme.group(1)}:// is not supported; "
                              "use an http:// or https:// URL, or a local folder")
        if re.match(r"^https?(:/?[^/]|//)", entry, re.IGNORECASE):  # http:/host, http//host
            raise ParamsError(f"{where}: not a URL (write it as http://host/path/)")


def _build(cls, raw, prefix: str):
    """Check `raw` against the dataclass `cls`, recursively, naming the first bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{prefix.rstrip('.') or 'params.yaml'}: must be a mapping of "
                          f"{', '.join(f.name for f in dataclasses.fields(cls))}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            raise ParamsError(f"{prefix}{shown(key, quote=False)}: unknown key; allowed here: {', '.join(fields)}")
    values = {}
    for name, spec in fields.items():
        key = prefix + name
        if name not in raw:
            raise ParamsError(f"{key}: missing; add it to params.yaml ({_allowed(hints[name], spec)})")
        values[name] = _check(raw[name], hints[name], spec, key)
    return cls(**values)


def check_value(value, hint, spec, key: str):
    """`value` checked as the field `spec` of type `hint` (made by `number`, `one_of` or
    `field()`), named `key` in the one-line error: params.yaml's own checks, for values that
    other modules declare (an architecture's options, vaepipe.model.architectures)."""
    return _check(value, hint, spec, key)


def _check(value, hint, spec, key):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if not _has_type(value, hint):
        raise ParamsError(f"{key}: must be {_allowed(hint, spec)}, got {shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"{key}: must be a finite number, got {shown(value)}")
    meta = spec.metadata
    if "choices" in meta and value not in meta["choices"]:
        raise ParamsError(f"{key}: must be {_allowed(hint, spec)}, got {shown(value)}")
    too_low = ((meta.get("minimum") is not None and value < meta["minimum"])
               or (meta.get("above") is not None and value <= meta["above"]))
    too_high = meta.get("maximum") is not None and value > meta["maximum"]
    if too_low or too_high:
        raise ParamsError(f"{key}: must be {_allowed(hint, spec)}, got {shown(value)}")
    if hint == list[int] | None and value is not None:
        if not value or any(v < 1 or v > MAX_WIDTH for v in value):
            raise ParamsError(f"{key}: must be null or a non-empty list of widths from 1 to {MAX_WIDTH}, "
                              f"got {shown(value)}")
        return [int(v) for v in value]
    if hint == list[int]:
        if not value or any(v < 0 for v in value) or len(set(value)) != len(value):
            raise ParamsError(f"{key}: must be a non-empty list of distinct epochs >= 0, got {shown(value)}")
        return sorted(value)
    if hint is float:
        return float(value)
    if hint is int:
        return int(value)
    return value


def _has_type(value, hint) -> bool:
    if isinstance(value, bool):  # YAML's yes/no must not pass for 1/0
        return hint is bool or (isinstance(hint, types.UnionType) and bool in typing.get_args(hint))
    if hint is bool:
        return False
    if isinstance(hint, types.UnionType):
        return any(_has_type(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float))
    if hint is int:  # 1E4 reads as a float; it still means the integer 10000
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if typing.get_origin(hint) is dict:
        key, item = typing.get_args(hint)
        return isinstance(value, dict) and all(_has_type(k, key) and _has_type(v, item) for k, v in value.items())
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_has_type(v, item) for v in value)
    return isinstance(value, hint)


def _allowed(hint, spec) -> str:
    meta = spec.metadata
    if "choices" in meta:
        return "one of " + ", ".join("null" if choice is None else str(choice) for choice in meta["choices"])
    kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint)
    if kind is None:
        return {list[int]: "a list of epochs", list[int] | None: "null or a list of layer widths",
                str | list[str] | None: "null, a URL or folder, or a list of them",
                dict[str, str] | None: "null or a mapping of file name to SHA-256"}.get(hint, "a mapping")
    bounds = []
    if meta.get("minimum") is not None:
        bounds.append(f">= {meta['minimum']}")
    if meta.get("above") is not None:
        bounds.append(f"> {meta['above']}")
    if meta.get("maximum") is not None:
        bounds.append(f"<= {meta['maximum']}")
    return " ".join([kind, " and ".join(bounds)]).strip()
