"""A folder of ordinary image files as a data set (`data.dataset: folder`).

Layout: `train/` and `test/` if both are there, else one folder split by `data.test_fraction`;
in each, one sub-folder per class (labels from the sorted folder names) or the images
directly (unlabelled). Every file Pillow reads becomes `side` × `side` bytes, grey or, with
`data.channels: 3`, colour (the red plane, then green, then blue):

- the first frame of an animation; EXIF orientation applied;
- transparency composited onto black (MNIST's background); for grey, palette, CMYK and
  colour images by ITU-R 601 luma (Pillow's "L"); for colour, every mode as Pillow's "RGB"
  (a grey image's three planes equal); 16-bit images scaled from 0–65535;
- the largest centred square cropped, then resized with a Lanczos filter (an image already
  `side` × `side` is used as it is, byte for byte).

Only the formats in FORMATS are decoded, whatever a file is named: Pillow would otherwise
pick a decoder by the contents (a PostScript file named `.png` goes to Ghostscript).
Every other file is skipped and listed with the reason: empty, not an image in those
formats, truncated, claiming more than MAX_PIXELS pixels (a decompression bomb) or more
than MAX_IMAGE_MEMORY to convert, a link that loops or leads nowhere, a link to a file
outside data.path, a link to a folder (never followed: data.path itself, train/ or test/
as a link are refused). Hidden files and folders (`.name`) are not data and are passed
over. A name that is not UTF-8, or holds control characters, is used, and written with
\\x escapes.

Images are ordered by file name (then class), so files named by index keep their order.
Free of PyTorch: Pillow and NumPy only, converted in parallel across the cores. The
converted bytes go to a file as they come (`Folder.spill`), never all held in memory: a
folder of 200 000 colour pictures at side 64 is 2.5 GB of them.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vaepipe.errors import DataError, printable
from vaepipe.resources import available_cores, available_memory, size
from vaepipe.data.tensorfile import Rows

MAX_PIXELS = 50_000_000  # a 50-megapixel photo; a 30 000 × 30 000 claim is a bomb
MAX_IMAGE_MEMORY = 512 << 20  # what converting one image may hold (image_memory), in each worker
WORKER_MEMORY = 128 << 20  # a forked worker's own pages, beside the image it converts
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")  # Pillow's names; PPM is every PNM
MAX_FILE_BYTES = 256 << 20
MAX_CLASSES = 255  # labels are stored as bytes, like MNIST's
SPLIT_SALT = b"vaepipe split\0"  # the train/test split is the data's, not the run's: `seed` never changes it
PARALLEL_FROM = 500  # fewer files convert faster in this process than workers start (benchmarks/folder.py)


@dataclass
class Entry:
    path: bytes  # as the file system spells it
    name: str  # relative to data.path, printable
    label: int  # -1 when unlabelled
    row: int = -1  # where its channels × side × side bytes lie in the spill; -1 for a file skipped
    sha256: str = ""  # of the file's bytes
    nbytes: int = 0  # the file's size


CHUNK_BYTES = 16 << 20  # read back from the spill at a time, whatever one image's size (at least one image)


@dataclass
class Folder:
    """What the folder yields: per split, the images' rows in the spill (read as bytes
    [N, channels·side²] with `images` or `array`), int64 labels, the files used (name, size,
    SHA-256, label); the class names ([] when unlabelled); the skipped."""

    spill: object = None  # a temporary file: every converted image's bytes, one row each
    row_bytes: int = 0
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, list[dict]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def images(self, split: str) -> Rows:
        """The split's images as `Rows`, read from the spill a chunk at a time."""
        rows = self.rows[split]

        def chunks() -> Iterator[bytes]:
            descriptor, step = self.spill.fileno(), max(1, CHUNK_BYTES // self.row_bytes)
            for start in range(0, len(rows), step):
                yield b"".join(os.pread(descriptor, self.row_bytes, int(row) * self.row_bytes)
                               for row in rows[start:start + step])
        return Rows((len(rows), self.row_bytes), np.dtype(np.uint8), chunks())

    def array(self, split: str) -> np.ndarray:
        """The split's images as one array (small folders, tests)."""
        stored = self.images(split)
        return np.frombuffer(b"".join(stored.chunks), dtype=np.uint8).reshape(stored.shape)


def printable_name(raw: bytes) -> str:
    """A file name as messages and JSON show it: bytes that are not UTF-8 and control
    characters as \\x escapes (an escape sequence in a name never reaches a terminal)."""
    return printable(raw.decode("utf-8", "backslashreplace"))


def _visible(names) -> list[bytes]:
    return sorted(name for name in names if not name.startswith(b"."))


def _skipped(path: bytes, root: bytes, reason: str) -> dict:
    """A row of metrics/data.json's skipped list: the file, relative to data.path, and why."""
    return {"file": printable_name(os.path.relpath(path, root)), "reason": reason}


FOLDER_LINK = "a link to a folder: not followed"


def _inside(path: bytes, root: bytes) -> bool:
    """Whether `path`, its links resolved, lies inside the folder `root`."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, top]) == top


def _walk(top: bytes, root: bytes, label: int, entries: list[Entry], skipped: list[dict]) -> None:
    """Every visible file under `top`; links to folders, and links to files outside `root`,
    listed as skipped, not followed."""
    for here, dirs, files in os.walk(top, followlinks=False):
        dirs[:] = _visible(dirs)
        for name in list(dirs):
            if os.path.islink(os.path.join(here, name)):
                dirs.remove(name)
                skipped.append(_skipped(os.path.join(here, name), root, FOLDER_LINK))
        for name in _visible(files):
            path = os.path.join(here, name)
            if os.path.islink(path) and os.path.exists(path) and not _inside(path, root):
                skipped.append(_skipped(path, root, "a link to a file outside data.path: not followed"))
                continue
            entries.append(Entry(path, printable_name(os.path.relpath(path, root)), label))


def _subfolders(top: bytes) -> list[bytes]:
    return [name for name in _visible(os.listdir(top))
            if os.path.isdir(os.path.join(top, name)) and not os.path.islink(os.path.join(top, name))]


def scan(root: Path) -> tuple[dict[str, list[Entry]] | list[Entry], list[str], list[dict]]:
    """The files of each split (or of the whole folder when it has no train/ and test/),
    the class names, and what the scan already skipped."""
    top = os.fsencode(root)
    if os.path.islink(top.rstrip(b"/") or top):
        raise DataError(f"data.path: {printable_name(top)} is a symbolic link, and links to folders are not followed; "
                        f"set data.path to the folder itself ({printable_name(os.path.realpath(top))})")
    if not os.path.isdir(top):
        raise DataError(f"data.path: {printable_name(top)} is not a folder; set it to the folder holding your images")
    given = {split: os.path.join(top, split.encode()) for split in ("train", "test")}
    for split, path in given.items():
        if os.path.islink(path) and os.path.isdir(path):
            raise DataError(f"data.path: {split}/ is a link to a folder, and links to folders are not followed; "
                            f"put the folder itself there, or set data.path to the folder holding train/ and test/")
    split_given = all(os.path.isdir(path) for path in given.values())
    tops = list(given.values()) if split_given else [top]
    class_names = sorted({name for part in tops for name in _subfolders(part)})
    labelled = bool(class_names)
    if labelled and len(class_names) < 2:
        raise DataError(f"data.path: one class folder ({printable_name(class_names[0])}); labels need at least two: "
                        "add another, or put the images directly in the folder for an unlabelled set")
    if len(class_names) > MAX_CLASSES:
        raise DataError(f"data.path: {len(class_names)} class folders, more than the {MAX_CLASSES} supported")
    skipped: list[dict] = []
    found: dict[str, list[Entry]] = {}
    for split, part in zip(("train", "test") if split_given else ("all",), tops):
        entries: list[Entry] = []
        if labelled:
            for name in _visible(os.listdir(part)):
                path = os.path.join(part, name)
                if os.path.islink(path) and os.path.isdir(path):  # a class folder's name included
                    skipped.append(_skipped(path, top, FOLDER_LINK))
                elif name in class_names:
                    _walk(path, top, class_names.index(name), entries, skipped)
                else:
                    skipped.append(_skipped(path, top, "outside the class folders"))
        else:
            _walk(part, top, -1, entries, skipped)
        found[split] = entries
    names = [printable_name(name) for name in class_names]
    return (found if split_given else found["all"]), names, skipped


def image_memory(width: int, height: int, mode: str, transparent: bool, channels: int = 1) -> int:
    """About what converting one image to `channels` bytes a pixel holds at its peak, from
    its header alone: Pillow's decoded pixels (1 byte for "1", "L", "P"; 2 for 16-bit; 4 for
    every other mode, RGB included) and the conversion's copies (the array it is read into,
    the converted bytes, and for colour their planes; three RGBA images when transparency
    is composited onto black). Measured: a 16-bit 7000 × 7000 PNG grows the process by
    244 MB against 280 MB here."""
    stored = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    working = (3 * 4 if transparent else stored + 1) + channels * (1 if channels == 1 or transparent else 2)
    return width * height * (stored + working)


def pool_workers(cores: int, memory: int) -> int:
    """How many images convert at once: one a core, as many as the memory holds when each
    worker may convert an image of MAX_IMAGE_MEMORY."""
    return max(1, min(cores, memory // (MAX_IMAGE_MEMORY + WORKER_MEMORY)))


ROWS = 256  # wide images convert this many rows at a time, so no 8-byte copy of the whole image is made


def _by_rows(array: np.ndarray, to_bytes) -> np.ndarray:
    out = np.empty(array.shape, dtype=np.uint8)
    for start in range(0, len(array), ROWS):
        out[start:start + ROWS] = to_bytes(array[start:start + ROWS])
    return out


def _transparent(image) -> bool:
    return "A" in image.mode or "transparency" in image.info


def _to_bytes(image, channels: int):
    """Any Pillow image as 8-bit grey ("L") or colour ("RGB"), as the module's docstring says."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return Image.fromarray(_by_rows(np.asarray(image), lambda rows: (
            np.clip(rows.astype(np.int64), 0, 65535) * 255 + 32767) // 65535), "L").convert(mode)
    if image.mode == "F":
        return Image.fromarray(_by_rows(np.asarray(image), lambda rows: np.clip(np.rint(rows), 0, 255)),
                               "L").convert(mode)
    if _transparent(image):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert(mode)
    return image.convert(mode)


def convert(path: bytes, side: int, channels: int = 1) -> tuple[bytes | None, str, int]:
    """One file: (its channels · side² bytes, plane by plane, its SHA-256, its size), or
    (None, why not, size)."""
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = None  # Pillow's own guard, replaced by the check below that names the size
    try:
        info = os.stat(path)  # follows links: a loop raises ELOOP, a dangling link ENOENT
    except OSError as error:
        reason = {40: "a link that loops", 2: "a link to nothing"}.get(error.errno, error.strerror)
        return None, reason, 0
    if not stat.S_ISREG(info.st_mode):
        return None, "not a regular file", 0
    if info.st_size == 0:
        return None, "an empty file", 0
    if info.st_size > MAX_FILE_BYTES:
        return None, f"larger than {MAX_FILE_BYTES >> 20} MB", info.st_size
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        return None, f"unreadable ({error.strerror})", info.st_size
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                return None, (f"claims {width} × {height} pixels, more than the {MAX_PIXELS} allowed "
                              "(a decompression bomb?)"), len(data)
            needs = image_memory(width, height, image.mode, _transparent(image), channels)
            if needs > MAX_IMAGE_MEMORY:
                return None, (f"{width} × {height} pixels in mode {image.mode} need about {needs >> 20} MB to convert, "
                              f"more than the {MAX_IMAGE_MEMORY >> 20} MB allowed an image"), len(data)
            converted = _to_bytes(ImageOps.exif_transpose(image), channels)  # loads the first frame
    except Image.UnidentifiedImageError:
        return None, f"not an image in a format read here ({', '.join(FORMATS)})", len(data)
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways inside a decoder
        return None, f"damaged ({str(error)[:80] or type(error).__name__})", len(data)
    width, height = converted.size
    edge = min(width, height)
    box = ((width - edge) // 2, (height - edge) // 2, (width - edge) // 2 + edge, (height - edge) // 2 + edge)
    square = converted.crop(box)  # cropped first: resize's box would let the filter reach past the crop
    if square.size != (side, side):
        square = square.resize((side, side), Image.Resampling.LANCZOS)
    pixels = np.asarray(square, dtype=np.uint8)
    return (pixels if channels == 1 else pixels.transpose(2, 0, 1)).tobytes(), digest, len(data)


def _convert_one(job: tuple[bytes, int, int]):
    return convert(*job)


def _worker_signals() -> None:
    """A worker leaves Ctrl-C to the stage, and dies at once when the pool terminates: the
    stage's own handlers (vaepipe.stage) would turn that into an exception in each worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def convert_all(paths: list[bytes], side: int, workers: int | None = None,
                channels: int = 1) -> Iterator[tuple[bytes | None, str, int]]:
    """`convert` over every file, yielded in order as each is done; across the cores when
    there are enough files."""
    workers = workers or pool_workers(available_cores(), available_memory())
    jobs = [(path, side, channels) for path in paths]
    progress = dict(total=len(jobs), desc="converting images", unit="image", disable=None, file=sys.stderr)
    if workers == 1 or len(jobs) < PARALLEL_FROM:
        yield from (convert(*job) for job in tqdm(jobs, **progress))
        return
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_signals)  # no torch here
    try:
        yield from tqdm(pool.imap(_convert_one, jobs, chunksize=256), **progress)
        pool.close()  # the workers finish and exit; none is started again
        pool.join()
    finally:
        pool.terminate()


def split_key(relative_path: bytes) -> float:
    """Where a file falls in [0, 1): a hash of its path in the folder, the same everywhere."""
    return int.from_bytes(hashlib.sha256(SPLIT_SALT + relative_path).digest()[:8], "big") / 2 ** 64


def split_by_fraction(entries: list[Entry], fraction: float, root: bytes) -> dict[str, list[Entry]]:
    """Each file to the test set when the hash of its path (relative to `root`) falls
    under `fraction`: adding or removing images never moves another between the splits.
    A class of two or more images keeps at least one on each side (the file nearest the
    other side moves); a class of one image trains."""
    by_label: dict[int, list[tuple[float, Entry]]] = {}
    for entry in entries:
        by_label.setdefault(entry.label, []).append((split_key(os.path.relpath(entry.path, root)), entry))
    splits: dict[str, list[Entry]] = {"train": [], "test": []}
    for members in by_label.values():
        members.sort(key=lambda pair: pair[0])
        tested = min(max(sum(key < fraction for key, _ in members), 1), len(members) - 1)
        splits["test"] += [entry for _, entry in members[:tested]]
        splits["train"] += [entry for _, entry in members[tested:]]
    return splits


def _order(entry: Entry) -> tuple:
    return os.path.basename(entry.path), entry.label, entry.path


def read_folder(root: Path, side: int, test_fraction: float, *, channels: int = 1,
                workers: int | None = None) -> Folder:
    """The folder as a data set, its images spilled to a temporary file; DataError (exit 2)
    when it cannot make one."""
    found, classes, skipped = scan(root)
    every = [e for part in found.values() for e in part] if isinstance(found, dict) else found
    if not every:
        raise DataError(f"data.path: {root} holds no files (hidden ones are passed over); "
                        "put images in it, directly or in one folder per class")
    row_bytes, spill_folder = channels * side * side, tempfile.gettempdir()
    need, limit = len(every) * row_bytes, shutil.disk_usage(spill_folder).free
    if 2 * need > limit:  # the spill, then the splits written from it
        raise DataError(f"data.path: {len(every)} files at data.side {side} need about {size(2 * need)} of disk, "
                        f"more than the {size(limit)} free in {spill_folder}; lower data.side or use fewer images")
    spill = tempfile.TemporaryFile(dir=spill_folder)  # gone when closed, or when the stage ends however it ends
    usable: list[Entry] = []
    for entry, (pixels, note, nbytes) in zip(every, convert_all([entry.path for entry in every], side, workers,
                                                                channels)):
        if pixels is None:
            skipped.append({"file": entry.name, "reason": note})
        else:
            spill.write(pixels)
            entry.row, entry.sha256, entry.nbytes = len(usable), note, nbytes
            usable.append(entry)
    spill.flush()
    present = {entry.label for entry in usable}
    for label, name in enumerate(classes):
        if label not in present:
            raise DataError(f"class {name}: none of its files is a usable image; add some, or remove the folder")
    if not usable:
        raise DataError(f"data.path: none of the {len(every)} files in {root} is a usable image "
                        f"(first: {skipped[0]['file']}: {skipped[0]['reason']})")
    splits = ({split: [e for e in part if e.row >= 0] for split, part in found.items()}
              if isinstance(found, dict) else split_by_fraction(usable, test_fraction, os.fsencode(root)))
    folder = Folder(spill, row_bytes, classes=classes, skipped=sorted(skipped, key=lambda row: row["file"]))
    for split in ("train", "test"):
        entries = sorted(splits[split], key=_order)
        if not entries:
            raise DataError(f"data.path: the {split} split has no usable image; add some"
                            + ("" if isinstance(found, dict) else " or raise data.test_fraction"))
        folder.rows[split] = np.array([e.row for e in entries], dtype=np.int64)
        folder.labels[split] = np.array([e.label for e in entries], dtype=np.int64)
        folder.files[split] = [{"file": e.name, "bytes": e.nbytes, "sha256": e.sha256, "label": e.label}
                               for e in entries]
    return folder
