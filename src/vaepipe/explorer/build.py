"""The explorer: a static page that runs the exported model in the browser.

For the notes' MLP it reads the weights out of the ONNX files the export stage checked (so
the page runs what was exported): the page's own decoder is about 60 lines of JavaScript,
a matrix product per layer, and decodes in well under a millisecond where onnxruntime-web would
add 15 MB of WebAssembly to every experiment's page. Any other architecture's files are
copied as they are, with onnxruntime-web (npm, pinned by package-lock.json) to run them.
Beside the page it writes everything it shows: the run's params and headline metrics, the
latent dimensions by KL, the map (the projection's last epoch), the map's test images and
their μ, and the fitted mixture.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from vaepipe.atomic import atomic_path
from vaepipe.errors import UserError
from vaepipe.layout import image_shape

PAGE = Path(__file__).parent / "page"  # index.html and explorer.js, copied as they are
RUNTIME = Path("node_modules/onnxruntime-web/dist")  # `make install` puts it there (npm ci)
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
METADATA = ("d", "likelihood", "variational")  # what export writes into each file and the page reads
ACTIVE = 0.01  # a dimension whose μ varies less than this over the test set is inactive (as test.active_units)


def onnx_graph(path: Path):
    """An ONNX file's model, or one line saying it is not an ONNX file."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # a protobuf decode error for a file that is not ONNX
        raise UserError(f"{path}: not an ONNX file ({str(error)[:80]}); run `dvc repro export --force`") from None


def onnx_metadata(path: Path) -> dict[str, str]:
    return {prop.key: prop.value for prop in onnx_graph(path).metadata_props}


def onnx_layers(path: Path) -> tuple[list[np.ndarray], dict[str, str]]:
    """The weight and bias of each Gemm (linear layer) of an ONNX graph, in order, and its
    metadata."""
    from onnx import numpy_helper

    graph = onnx_graph(path)
    try:
        tensors = {init.name: numpy_helper.to_array(init) for init in graph.graph.initializer}
        layers = []
        for node in graph.graph.node:
            if node.op_type == "Gemm":
                transposed = any(a.name == "transB" and a.i == 1 for a in node.attribute)
                weight, bias = tensors[node.input[1]], tensors[node.input[2]]
                if weight.ndim != 2 or bias.ndim != 1:
                    raise ValueError("a Gemm whose weight or bias has the wrong rank")
                layers += [weight if transposed else weight.T, bias]
        layers = [np.ascontiguousarray(layer, dtype="<f4") for layer in layers]
    except (KeyError, IndexError, ValueError, TypeError) as error:
        raise UserError(f"{path}: not an ONNX model this project exported (its graph: {type(error).__name__} "
                        f"{str(error)[:60]}); run `dvc repro export --force`") from None
    metadata = {prop.key: prop.value for prop in graph.metadata_props}
    missing = [key for key in METADATA if key not in metadata]
    if missing or not metadata.get("d", "").isdigit():
        raise UserError(f"{path}: not an ONNX model this project exported (metadata {', '.join(missing) or 'd'} "
                        "missing or wrong); run `dvc repro export --force`")
    return layers, metadata


def chained(layers: list[np.ndarray]) -> bool:
    """Whether [weight [out, in], bias [out], …] fit one after another."""
    weights, biases = layers[::2], layers[1::2]
    return (all(w.shape[0] == b.shape[0] for w, b in zip(weights, biases))
            and all(after.shape[1] == before.shape[0] for before, after in zip(weights, weights[1:])))


def map_points(projection_csv: Path, mu: np.ndarray) -> dict:
    """The test means in 2-D at the projection's last epoch (or μ itself when d = 2)."""
    rows = list(csv.DictReader(projection_csv.open()))
    last = max(int(row["epoch"]) for row in rows)
    rows = [row for row in rows if int(row["epoch"]) == last]
    if mu.shape[1] == 2:
        xy = mu[:len(rows)].tolist()
    else:
        xy = [[float(row["x"]), float(row["y"])] for row in rows]
    return {"epoch": last, "xy": xy, "labels": [int(row["label"]) for row in rows]}


def dimensions(kl_csv: Path, mu: np.ndarray) -> list[dict]:
    """Every latent dimension, most KL first, with whether it is active."""
    kl = {int(row["dim"]): float(row["kl"]) for row in csv.DictReader(kl_csv.open())}
    spread = mu.var(axis=0)
    dims = [{"dim": u, "kl": kl[u], "active": bool(spread[u] > ACTIVE)} for u in range(mu.shape[1])]
    return sorted(dims, key=lambda row: -row["kl"])


def checked_metadata(path: Path) -> dict[str, str]:
    """The metadata of an ONNX file of any architecture, or one line saying it is not an
    ONNX model this project wrote."""
    metadata = onnx_metadata(path)
    if not all(metadata.get(key, "").isdigit() for key in ("d", "pixels")) or "likelihood" not in metadata:
        raise UserError(f"{path}: not an ONNX model this project exported (metadata d, pixels or likelihood "
                        "missing or wrong); run `dvc repro export --force`")
    return metadata


def image_of(pixels: int) -> dict | None:
    """run.json's channels and side of the model's images; None when `pixels` is no image."""
    try:
        channels, side = image_shape(pixels)
    except ValueError:
        return None
    return {"channels": channels, "side": side}


def build(out: Path, *, encoder: Path, decoder: Path, test_x, mu: np.ndarray, projection_csv: Path,
          kl_csv: Path, mixture: dict, params: dict, metrics: dict, classes: list[str]) -> None:
    """Write the page and its data to `out`, atomically: the notes' MLP with its weights for
    the page's own decoder, any other architecture with its ONNX files and onnxruntime-web."""
    if onnx_metadata(decoder).get("arch", "mlp") != "mlp":
        return build_with_runtime(out, encoder=encoder, decoder=decoder, test_x=test_x, mu=mu,
                                  projection_csv=projection_csv, kl_csv=kl_csv, mixture=mixture, params=params,
                                  metrics=metrics, classes=classes)
    enc, meta = onnx_layers(encoder)
    dec, _ = onnx_layers(decoder)
    d = int(meta["d"])
    if (len(enc) < 4 or len(enc) % 2 or len(dec) != len(enc) or not chained(enc) or not chained(dec)
            or dec[0].shape[1] != d or enc[-2].shape[0] != 2 * d or mu.shape[1] != d
            or enc[0].shape[1] != dec[-2].shape[0] or image_of(dec[-2].shape[0]) is None):
        raise UserError(f"{encoder.parent}: the ONNX files do not hold this pipeline's model of d = {d}; "
                        "run `dvc repro export --force`")
    run = {"likelihood": meta["likelihood"], "variational": meta["variational"] == "True",
           "activation": meta.get("activation", "relu"), **image_of(len(dec[-1])),
           "layers": {"encoder": [list(layer.shape) for layer in enc], "decoder": [list(layer.shape) for layer in dec]}}
    write_page(out, run, {"weights.bin": b"".join(layer.tobytes() for layer in enc + dec)}, d=d, test_x=test_x, mu=mu,
               projection_csv=projection_csv, kl_csv=kl_csv, mixture=mixture, params=params, metrics=metrics,
               classes=classes)


def build_with_runtime(out: Path, *, encoder: Path, decoder: Path, **page) -> None:
    """Any architecture: its two ONNX files run in the page by onnxruntime-web."""
    meta = checked_metadata(decoder)
    d, pixels = int(meta["d"]), int(meta["pixels"])
    if checked_metadata(encoder) != meta or page["mu"].shape[1] != d or image_of(pixels) is None:
        raise UserError(f"{encoder.parent}: the ONNX files do not hold this pipeline's model of d = {d}; "
                        "run `dvc repro export --force`")
    missing = [name for name in RUNTIME_FILES if not (RUNTIME / name).is_file()]
    if missing:
        raise UserError(f"{RUNTIME / missing[0]} not found: the explorer runs a {meta['arch']} model with "
                        "onnxruntime-web from npm; run `make install` (it needs npm) and `dvc repro explore`")
    run = {"likelihood": meta["likelihood"], "variational": meta["variational"] == "True", **image_of(pixels),
           "runtime": "onnxruntime-web"}
    try:  # the architecture's options, defaults included, as the model was built with them
        options = json.loads(meta.get("arch_options", "{}"))
    except ValueError:
        options = None
    if not isinstance(options, dict):
        raise UserError(f"{decoder}: its arch_options are not a mapping; run `dvc repro export --force`")
    page["params"] = page["params"] | {f"arch_options.{name}": value for name, value in options.items()}
    files = {name: (RUNTIME / name).read_bytes() for name in RUNTIME_FILES}
    files |= {"encoder.onnx": Path(encoder).read_bytes(), "decoder.onnx": Path(decoder).read_bytes()}
    write_page(out, run, files, d=d, **page)


def write_page(out: Path, run: dict, files: dict[str, bytes], *, d: int, test_x, mu: np.ndarray, projection_csv: Path,
               kl_csv: Path, mixture: dict, params: dict, metrics: dict, classes: list[str]) -> None:
    where = map_points(projection_csv, mu)
    points = len(where["xy"])
    images = np.asarray(test_x[:points], dtype=np.uint8)  # the stored bytes
    run = run | {"d": d, "params": params, "metrics": metrics, "dims": dimensions(kl_csv, mu), "map": where,
                 "points": points, "mixture": mixture, "classes": classes}
    with atomic_path(out, directory=True) as tmp:
        for name in ("index.html", "explorer.js"):
            (tmp / name).write_bytes((PAGE / name).read_bytes())
        (tmp / "run.json").write_text(json.dumps(run, sort_keys=True, separators=(",", ":")))
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / "images.bin").write_bytes(images.tobytes())
        (tmp / "mu.bin").write_bytes(np.ascontiguousarray(mu[:points], dtype="<f4").tobytes())


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot be read ({error.__class__.__name__}); run `dvc repro`") from None

