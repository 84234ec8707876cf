"""A folder of ordinary images as the data set (`data.dataset: folder`): every kind of bad
file skipped and listed or converted as documented, the refusals, MNIST's own test set as
PNGs giving the IDX path's tensors exactly, and the whole pipeline on a folder with `dvc`."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from support import BIN, dvc, explorer_page, git, make_repo, run_stage, set_params, stage_env
from vaepipe.data.folder import (MAX_IMAGE_MEMORY, PARALLEL_FROM, WORKER_MEMORY, convert_all, image_memory,
                                 pool_workers, read_folder)
from vaepipe.data.idx import read_split
from vaepipe.runs.markdown import escape
from vaepipe.data.pngs import write_pngs


def grey_png(path: Path, value: int, size=(28, 28)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


def two_classes(root: Path) -> Path:
    for k, name in enumerate(["a", "b"]):
        for i in range(3):
            grey_png(root / name / f"{i}.png", 40 * k + 10 * i)
    return root


def normalize(workdir: Path, folder: Path, **changes):
    set_params(workdir, data__dataset="folder", data__path=str(folder), **changes)
    return run_stage("normalize", workdir, without="torch")  # a folder of images is read without it too


def report(workdir: Path) -> dict:
    return json.loads((workdir / "metrics/data.json").read_text())


def converted(workdir: Path, name: str) -> np.ndarray:
    """The bytes the normalize stage kept for file `name`."""
    files = json.loads((workdir / "data/normalized/files.json").read_text())
    for split, rows in files.items():
        for i, row in enumerate(rows):
            if row["file"] == name:
                images = torch.load(workdir / f"data/normalized/{split}.pt", weights_only=True)["images"]
                return images[i].numpy().astype(int)  # the stored bytes
    raise AssertionError(f"{name} not among the files used: {files}")


POSTSCRIPT = "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke\nshowpage\n"


def png_claiming(width: int, height: int, depth: int = 8, colour: int = 0) -> bytes:
    """A valid PNG header claiming width × height pixels (grey; colour 6 = RGBA), with almost
    no data behind it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def truncated_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])


def looping_link(path: Path) -> None:
    os.symlink(path.name + "-other", path)
    os.symlink(path.name, path.parent / (path.name + "-other"))


SKIPPED = {  # file name -> (how to make it, the reason listed)
    "text.png": (lambda p: p.write_text("not an image at all\n"), "not an image in a format read here"),
    # Pillow would hand it to Ghostscript by its contents, whatever its name
    "postscript.png": (lambda p: p.write_text(POSTSCRIPT), "not an image in a format read here (PNG, JPEG"),
    "empty.png": (lambda p: p.write_bytes(b""), "an empty file"),
    "truncated.png": (truncated_png, "damaged (image file is truncated"),
    "bomb.png": (lambda p: p.write_bytes(png_claiming(30_000, 30_000)), "claims 30000 × 30000 pixels"),
    "loop": (looping_link, "a link that loops"),
    "pipe.png": (lambda p: os.mkfifo(p), "not a regular file"),  # never opened: reading it would block
}


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_a_bad_file_is_skipped_and_listed_and_the_rest_used(workdir, tmp_path, name):
    folder = two_classes(tmp_path / "images")
    make, reason = SKIPPED[name]
    make(folder / "a" / name)
    result = normalize(workdir, folder)
    assert result.returncode == 0, result.stderr
    skipped = report(workdir)["skipped"]
    assert any(row["file"] == f"a/{name}" and row["reason"].startswith(reason) for row in skipped), skipped
    assert report(workdir)["data"]["skipped"] == len(skipped) >= 1
    assert report(workdir)["data"]["train"] + report(workdir)["data"]["test"] == 6
    assert f"skipped {len(skipped)} files that are not usable images: listed in metrics/data.json" in result.stderr


def test_the_bomb_is_refused_before_its_pixels_are_allocated(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(30_000, 30_000))
    assert bomb.stat().st_size < 200
    [(pixels, reason, _)] = convert_all([os.fsencode(bomb)], 28)
    assert pixels is None and "a decompression bomb" in reason


CONVERTED = {  # file name -> (how to make it, the grey value every pixel must have)
    # palette with a transparent entry: index 1 (white, opaque) and index 0 (transparent)
    "palette.png": (lambda p: _palette(p), 255),
    "rgba.png": (lambda p: Image.new("RGBA", (30, 30), (255, 255, 255, 128)).save(p), 128),
    "grey16.png": (lambda p: Image.fromarray(np.full((28, 28), 257 * 100, dtype=np.uint16)).save(p), 100),
    "cmyk.tif": (lambda p: Image.new("CMYK", (28, 28), (0, 0, 0, 0)).save(p), 255),
    "animated.gif": (lambda p: _animated(p), 200),
    "rgb.bmp": (lambda p: Image.new("RGB", (56, 40), (100, 150, 200)).save(p), 141),  # 601 luma
    "photo.webp": (lambda p: Image.new("RGB", (40, 40), (90, 90, 90)).save(p, lossless=True), 90),
}


def _palette(path: Path) -> None:
    image = Image.new("P", (28, 28), 1)
    image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    image.save(path, transparency=0)


def _animated(path: Path) -> None:
    frames = [Image.new("L", (28, 28), value) for value in (200, 50)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 2


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_other_modes_and_formats_are_converted_as_documented(workdir, tmp_path, name):
    folder = two_classes(tmp_path / "images")
    make, value = CONVERTED[name]
    make(folder / "a" / name)
    result = normalize(workdir, folder)
    assert result.returncode == 0, result.stderr
    assert report(workdir)["skipped"] == []
    pixels = converted(workdir, f"a/{name}")
    assert pixels.shape == (784,) and set(pixels.tolist()) == {value}


def test_aspect_is_kept_by_cropping_the_centred_square(tmp_path):
    wide = np.zeros((20, 60), dtype=np.uint8)
    wide[:, 20:40] = 255  # only the centred square is white: the crop keeps it and drops the rest
    Image.fromarray(wide).save(tmp_path / "wide.png")
    [(pixels, _, _)] = convert_all([os.fsencode(tmp_path / "wide.png")], 10)
    assert set(np.frombuffer(pixels, dtype=np.uint8).tolist()) == {255}


def test_a_name_that_is_not_utf8_is_used_and_written_with_escapes(workdir, tmp_path):
    folder = two_classes(tmp_path / "images")
    grey_png(Path(os.fsdecode(os.fsencode(folder / "a") + b"/caf\xe9.png")), 77)
    result = normalize(workdir, folder)
    assert result.returncode == 0, result.stderr
    assert set(converted(workdir, "a/caf\\xe9.png").tolist()) == {77}


def test_links_to_folders_and_hidden_files(workdir, tmp_path):
    folder = two_classes(tmp_path / "images")
    (folder / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    os.symlink(folder / "b", folder / "a" / "more")
    result = normalize(workdir, folder)
    assert result.returncode == 0, result.stderr
    assert report(workdir)["skipped"] == [{"file": "a/more", "reason": "a link to a folder: not followed"}]
    assert report(workdir)["data"]["train"] + report(workdir)["data"]["test"] == 6


LINKS = {  # a layout with a link -> (exit code, what stderr or the skipped list says)
    "data.path is a link": (2, "is a symbolic link, and links to folders are not followed"),
    "train/ is a link": (2, "train/ is a link to a folder, and links to folders are not followed"),
    "a class folder is a link": (0, "a link to a folder: not followed"),
    "a file links outside": (0, "a link to a file outside data.path: not followed"),
}


@pytest.mark.parametrize("case", sorted(LINKS))
def test_folder_links_are_not_followed(workdir, tmp_path, case):
    """No image from outside data.path enters the data set through a link, and no outside
    name reaches metrics/data.json; a file link that stays inside the folder is used."""
    outside = two_classes(tmp_path / "home")  # e.g. a link to $HOME
    grey_png(outside / "a" / "private.png", 99)
    folder = tmp_path / "images"
    for split in ("train", "test"):
        two_classes(folder / split)
    if case == "data.path is a link":
        os.symlink(folder, tmp_path / "link")
        folder = tmp_path / "link"
    elif case == "train/ is a link":
        shutil.rmtree(folder / "train")
        os.symlink(outside, folder / "train")
    elif case == "a class folder is a link":
        shutil.rmtree(folder / "test" / "a")
        os.symlink(outside / "a", folder / "test" / "a")
    else:
        os.symlink(outside / "a" / "private.png", folder / "train" / "a" / "private.png")
        os.symlink(folder / "train" / "a" / "0.png", folder / "train" / "a" / "again.png")  # inside: used
    code, says = LINKS[case]
    result = normalize(workdir, folder)
    assert result.returncode == code, result.stderr
    if code:
        assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
        assert not (workdir / "data/normalized").exists()
        return
    assert [row["reason"] for row in report(workdir)["skipped"]] == [says]
    used = json.loads((workdir / "data/normalized/files.json").read_text())
    names = [row["file"] for rows in used.values() for row in rows]
    assert "private" not in json.dumps(used) and not any("home" in name for name in names)
    assert ("train/a/again.png" in names) == (case == "a file links outside")


def test_an_image_too_large_to_convert_is_skipped_before_its_pixels_are_decoded(tmp_path):
    """36 megapixels of RGBA (under the pixel limit) would hold about 600 MB while its
    transparency is composited: skipped from its header, in a few hundred bytes of work."""
    wide = tmp_path / "wide.png"
    wide.write_bytes(png_claiming(6000, 6000, colour=6))
    [(pixels, reason, _)] = convert_all([os.fsencode(wide)], 28)
    assert pixels is None and reason.startswith("6000 × 6000 pixels in mode RGBA need about 583 MB"), reason
    assert image_memory(6000, 6000, "RGBA", True) > MAX_IMAGE_MEMORY >= image_memory(7000, 7000, "I;16", False)


def test_a_16_bit_image_converts_within_the_memory_its_header_promises(tmp_path):
    """A 95 KB 16-bit 7000 × 7000 PNG cost about 1 GB (its pixels as 8-byte integers, three
    times over); converted by rows, the process grows by no more than image_memory says."""
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((7000, 7000), 257 * 100, dtype=np.uint16)).save(path)
    assert path.stat().st_size < 200_000
    script = ("import os, resource, sys\nfrom vaepipe.data.folder import convert\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "pixels, _, _ = convert(os.fsencode(sys.argv[1]), 28)\n"
              "print(set(pixels), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n")
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                            env=stage_env())
    assert result.returncode == 0, result.stderr
    values, grown = result.stdout.rsplit(" ", 1)
    assert values == "{100}"  # the same bytes as before: (v · 255 + 32767) // 65535
    assert int(grown) <= image_memory(7000, 7000, "I;16", False), f"grew by {int(grown) >> 20} MB"


def test_the_pool_converts_no_more_images_at_once_than_memory_holds():
    each = MAX_IMAGE_MEMORY + WORKER_MEMORY
    assert pool_workers(16, 3 * each + 1) == 3
    assert pool_workers(2, 100 * each) == 2
    assert pool_workers(8, each // 2) == 1  # one at a time still converts


def test_control_characters_in_names_are_escaped_in_every_message(workdir, tmp_path):
    """An escape sequence in a file or folder name reaches neither the terminal nor the
    one-line error raw: written as \\x escapes, as a name that is not UTF-8 is."""
    folder = two_classes(tmp_path / "images")
    (folder / "c\x1b[2J").mkdir()
    (folder / "c\x1b[2J" / "x\x1b[2J.png").write_text("not an image")
    result = normalize(workdir, folder)
    assert result.returncode == 2 and "\x1b" not in result.stderr, result.stderr
    assert "class c\\x1b[2J: none of its files is a usable image" in result.stderr
    shutil.rmtree(folder / "c\x1b[2J")
    (folder / "a" / "x\x1b[2J\u202e.png").write_text("not an image")
    result = normalize(workdir, folder)
    assert result.returncode == 0 and "\x1b" not in result.stderr, result.stderr
    assert [row["file"] for row in report(workdir)["skipped"]] == ["a/x\\x1b[2J\\u202e.png"]


def _crowd(folder: Path) -> None:
    """Twice the files the disk holds at data.side 512, two bytes a pixel (the spill, then the
    splits; checked before any is read): space freed between this count and the stage's own
    check must not make them fit."""
    count = 2 * (shutil.disk_usage(tempfile.gettempdir()).free // (512 * 512 * 2)) + 1
    for k in ("a", "b"):
        (folder / k).mkdir(parents=True)
    for i in range(count):
        (folder / ("a", "b")[i % 2] / f"{i}.png").touch()


REFUSED = {  # what the folder holds -> the one line
    "empty": (lambda f: f.mkdir(), "holds no files"),
    "one class": (lambda f: [grey_png(f / "only" / f"{i}.png", i) for i in range(3)], "one class folder (only)"),
    "a class of bad files": (lambda f: [two_classes(f), [(f / "c").mkdir(), (f / "c" / "x.png").write_text("x")]],
                             "class c: none of its files is a usable image"),
    "not a folder": (lambda f: f.write_text("a file"), "is not a folder"),
    "too many files": (_crowd, "files at data.side 512 need about"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_folder_that_makes_no_data_set_is_one_line_and_exit_2_with_nothing_touched(workdir, tmp_path, case):
    earlier = {"data/normalized/train.pt": b"earlier", "metrics/data.json": b'{"earlier": 1}'}
    for name, content in earlier.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_bytes(content)
    make, message = REFUSED[case]
    make(tmp_path / "images")
    result = normalize(workdir, tmp_path / "images", **({"data__side": 512} if case == "too many files" else {}))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert {name: (workdir / name).read_bytes() for name in earlier} == earlier
    assert sorted(p.name for p in (workdir / "data").iterdir()) == ["normalized"]  # no temporary left


def test_the_stage_converts_in_parallel_and_its_workers_exit(workdir, tmp_path):
    """Enough files for the worker pool, under the stage's own signal handlers; the same
    bytes as converting in one process."""
    folder = tmp_path / "images"
    rng = np.random.default_rng(1)
    for i in range(PARALLEL_FROM + 100):
        where = folder / ("a", "b")[i % 2] / f"{i:04d}.png"
        where.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (30, 20), dtype=np.uint8)).save(where)
    set_params(workdir, data__dataset="folder", data__path=str(folder))
    result = run_stage("normalize", workdir, timeout=120)
    assert result.returncode == 0, result.stderr
    serial = read_folder(folder, 28, 0.1, workers=1)
    for split in ("train", "test"):
        saved = torch.load(workdir / f"data/normalized/{split}.pt", weights_only=True)["images"]
        assert torch.equal(saved, torch.from_numpy(serial.array(split).copy()))


def test_a_seeded_split_by_class_and_given_splits(tmp_path):
    folder = tmp_path / "images"
    for k in ("x", "y", "z"):
        for i in range(20):
            grey_png(folder / k / f"{i:02d}.png", i)
    first, again = read_folder(folder, 28, 0.25), read_folder(folder, 28, 0.25)
    assert first.files == again.files and all(np.array_equal(first.array(s), again.array(s)) for s in first.rows)
    tested = np.bincount(first.labels["test"]).tolist()
    assert len(tested) == 3 and all(1 <= count <= 10 for count in tested) and 9 <= sum(tested) <= 21
    sides = {row["file"]: split for split, rows in first.files.items() for row in rows}
    for i in range(20, 40):  # new images never move the ones already there
        grey_png(folder / "y" / f"{i:02d}.png", i)
    grown = read_folder(folder, 28, 0.25)
    assert all(sides[row["file"]] == split for split, rows in grown.files.items() for row in rows
               if row["file"] in sides)
    given = tmp_path / "given"
    for split, count in (("train", 4), ("test", 2)):
        for i in range(count):
            grey_png(given / split / f"{i}.png", i)  # unlabelled
    data = read_folder(given, 16, 0.5)
    assert data.classes == [] and (data.labels["train"] == -1).all()
    assert [len(data.array(s)) for s in ("train", "test")] == [4, 2] and data.array("test").shape[1] == 256


def test_the_whole_mnist_as_pngs_gives_the_idx_tensors_exactly(mnist, tmp_path, workdir):
    folder = tmp_path / "mnist-png"
    assert write_pngs(mnist, folder) == 70_000
    result = normalize(workdir, folder)
    assert result.returncode == 0, result.stderr
    for split in ("train", "test"):
        x, y = read_split(mnist, split)
        saved = torch.load(workdir / f"data/normalized/{split}.pt", weights_only=True)
        assert torch.equal(saved["images"], torch.from_numpy(x)), split
        assert torch.equal(saved["labels"], torch.from_numpy(y)), split
    assert json.loads((workdir / "data/normalized/classes.json").read_text()) == [str(k) for k in range(10)]


# --- the whole pipeline on a folder, with dvc

SHAPES = ("bar", "column", "ring")


def draw(shape: str, rng: np.random.Generator) -> Image.Image:
    """One image of a class: a bar, a column or a ring, in colour or grey, of any size."""
    width, height = (int(v) for v in rng.integers(24, 90, 2))
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    mask = {"bar": abs(y - 0.5) < 0.15, "column": abs(x - 0.5) < 0.15,
            "ring": abs(np.hypot(x - 0.5, y - 0.5) - 0.3) < 0.08}[shape]
    ink = rng.uniform(0.6, 1.0) * mask + rng.uniform(0, 0.2, mask.shape)
    if rng.random() < 0.5:
        return Image.fromarray((ink * 255).astype(np.uint8), "L")
    tint = rng.uniform(0.5, 1.0, 3)
    return Image.fromarray((ink[..., None] * tint * 255).astype(np.uint8), "RGB")


def image_folder(root: Path, per_class: int = 100, labelled: bool = True) -> Path:
    rng = np.random.default_rng(7)
    for k, shape in enumerate(SHAPES):
        for i in range(per_class):
            where = root / shape if labelled else root
            where.mkdir(parents=True, exist_ok=True)
            draw(shape, rng).save(where / f"{shape}-{i:03d}.{('png', 'jpg', 'bmp')[i % 3]}")
    return root


@pytest.fixture(scope="module")
def folder_repo(tmp_path_factory):
    images = image_folder(tmp_path_factory.mktemp("images"))
    return make_repo(tmp_path_factory.mktemp("repo"), None, dataset="folder", data__path=str(images),
                     classifier__epochs=3)


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def metrics(repo: Path, name: str) -> dict:
    return json.loads((repo / "metrics" / f"{name}.json").read_text())


@pytest.mark.e2e
def test_folder_pipeline_runs_every_stage_with_its_classes(folder_repo):
    from test_pipeline import PNGS, STAGES

    result = dvc(folder_repo, "repro")
    assert sorted(ran(result.stdout)) == sorted(STAGES)
    counts = metrics(folder_repo, "data")["data"]
    assert counts["train"] + counts["test"] == 300 and 15 <= counts["test"] <= 45  # about 0.1, by path hash
    assert (counts["classes"], counts["skipped"]) == (3, 0)
    for png in PNGS:
        assert (folder_repo / "plots" / f"{png}.png").stat().st_size > 1000, png
    assert metrics(folder_repo, "classifier")["classifier"]["accuracy"] > 0.8  # three shapes, told apart
    assert set(metrics(folder_repo, "eval")["samples"]) == {"fd", "class_balance"}
    run = json.loads((folder_repo / "explorer/run.json").read_text())
    assert run["classes"] == list(SHAPES) and run["side"] == 28
    used = json.loads((folder_repo / "data/normalized/files.json").read_text())
    assert {row["file"].split("/")[0] for row in used["test"]} == set(SHAPES)
    assert all(len(row["sha256"]) == 64 and row["bytes"] > 0 for row in used["train"])
    git(folder_repo, "add", "-A")
    git(folder_repo, "commit", "-q", "-m", "a run on a folder")


@pytest.mark.e2e
def test_folder_is_a_dependency_editing_one_image_reruns_from_normalize(folder_repo):
    assert ran(dvc(folder_repo, "repro").stdout) == []  # nothing changed: nothing runs
    images = Path(yaml.safe_load((folder_repo / "params.yaml").read_text())["data"]["path"])
    edited = images / "ring" / "ring-004.jpg"
    Image.new("L", (40, 40), 255).save(edited)
    raw_before = yaml.safe_load((folder_repo / "dvc.lock").read_text())["stages"]["download"]["outs"]
    result = dvc(folder_repo, "repro")
    # download lists the folder too (so that DVC refuses a data.path inside data/raw): it
    # re-runs and writes the same note; everything from normalize runs on the new image
    assert ran(result.stdout)[:2] == ["download", "normalize"] and "train" in ran(result.stdout)
    assert yaml.safe_load((folder_repo / "dvc.lock").read_text())["stages"]["download"]["outs"] == raw_before
    used = json.loads((folder_repo / "data/normalized/files.json").read_text())
    row = next(r for split in used.values() for r in split if r["file"] == "ring/ring-004.jpg")
    assert row["bytes"] == edited.stat().st_size
    split = next(split for split, rows in used.items() if row in rows)
    subprocess.run([str(BIN / "python"), "-m", "vaepipe.runs.review", "HEAD", "--out", "review"], cwd=folder_repo,
                   env=stage_env(), check=True, capture_output=True)
    report = (folder_repo / "review/report.md").read_text()  # the review names the image
    assert f"| changed | 1 | {escape(f'{split}: ring/ring-004.jpg')} |" in report, report
    assert "| added | 0 |" in report and "| removed | 0 |" in report
    git(folder_repo, "add", "-A")
    git(folder_repo, "commit", "-q", "-m", "one image edited")


@pytest.mark.e2e
def test_folder_side_32_experiment_and_its_explorer(folder_repo, browser):
    from vaepipe.api import load

    result = dvc(folder_repo, "exp", "run", "-S", "data.side=32")
    assert ran(result.stdout)[0] == "normalize"
    tested = metrics(folder_repo, "data")["data"]["test"]
    assert torch.load(folder_repo / "data/normalized/test.pt", weights_only=True)["images"].shape == (tested, 1024)
    assert json.loads((folder_repo / "explorer/run.json").read_text())["side"] == 32
    assert "accuracy" in metrics(folder_repo, "classifier")["classifier"]
    model = load(folder_repo / "models/model.pt")
    expected = np.rint(model.decode(torch.zeros(1, model.d)).reshape(32, 32).numpy() * 255)
    with explorer_page(browser, folder_repo / "explorer") as page:
        assert page.errors == []
        out = "document.getElementById('out')"
        assert page.evaluate(f"[{out}.width, {out}.height]") == [32, 32]
        drawn = page.evaluate(f"Array.from({out}.getContext('2d').getImageData(0, 0, 32, 32).data)")
        assert np.abs(np.array(drawn).reshape(32, 32, 4)[:, :, 0] - expected).max() <= 1  # z = 0, decoded in the page
        assert page.inner_text("#legend").split() == list(SHAPES)


@pytest.mark.e2e
def test_unlabelled_folder_runs_every_stage_and_leaves_out_what_needs_labels(folder_repo, tmp_path, browser):
    from test_pipeline import STAGES

    images = image_folder(tmp_path / "unlabelled", per_class=40, labelled=False)
    result = dvc(folder_repo, "exp", "run", "-S", f"data.path={images}", "-S", "data.side=28")
    # every stage: download lists data.path too (it writes the same note; docs/images.md)
    assert sorted(set(ran(result.stdout))) == sorted(STAGES)
    assert "unlabelled images: no scoring classifier" in result.stdout + result.stderr
    assert metrics(folder_repo, "data")["data"]["classes"] == 0
    assert metrics(folder_repo, "classifier") == {"classifier": {}}
    assert "samples" not in metrics(folder_repo, "eval") and metrics(folder_repo, "latent") == {"samples_gmm": {}}
    assert json.loads((folder_repo / "explorer/run.json").read_text())["classes"] == []
    with explorer_page(browser, folder_repo / "explorer") as page:
        assert page.errors == [] and page.inner_text("#legend").strip() == ""
        page.click("#map", position={"x": 180, "y": 180})
        assert "label" not in page.inner_text("#pickedLabel")
