"""The download stage's job: fetch the four IDX files from a mirror and verify them."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from vaepipe.atomic import DISK_FULL, atomic_path
from vaepipe.layout import FILES, PIXELS
from vaepipe.errors import UserError
from vaepipe.data.idx import check_idx
from vaepipe.resources import available_memory


@dataclass(frozen=True)
class Checksum:
    """torchvision's MD5 of the .gz, and the published MD5 of the IDX bytes inside it.

    A file passes when either matches: a mirror that recompressed the files (Debian's
    fashion-mnist package did) still serves the same images, but never other bytes. A
    custom file pinned in params.yaml (`data.sha256`) passes only on its SHA-256.
    """

    gz: str
    idx: str
    sha256: str | None = None


@dataclass(frozen=True)
class Limits:
    """How long and how much: `timeout` seconds without an answer, a `deadline` (monotonic
    clock) for the whole download, and at most `max_bytes` per file."""

    timeout: float
    deadline: float
    max_bytes: int

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise FetchError("the download ran past data.deadline")
        return min(self.timeout, left)


DATASETS = {
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "http://yann.lecun.com/exdb/mnist/"],
        "files": {
            "train-images-idx3-ubyte.gz": Checksum("f68b3c2dcbeaaa9fbdd348bbdeb94873",
                                                   "6bbc9ace898e44ae57da46a324031adb"),
            "train-labels-idx1-ubyte.gz": Checksum("d53e105ee54ea40749a09fcbcd1e9432",
                                                   "a25bea736e30d166cdddb491f175f624"),
            "t10k-images-idx3-ubyte.gz": Checksum("9fb629c4189551a2d022fa330f9573f3",
                                                  "2646ac647ad5339dbf082846283269ea"),
            "t10k-labels-idx1-ubyte.gz": Checksum("ec29112dd5afa0611ce80d1b7f02629c",
                                                  "27ae3e4e09519cfbb04c329615203637"),
        },
    },
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "files": {
            "train-images-idx3-ubyte.gz": Checksum("8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                                   "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            "train-labels-idx1-ubyte.gz": Checksum("25c81989df183df01b3e8a0aad5dffbe",
                                                   "9018921c3c673c538a1fc5bad174d6f9"),
            "t10k-images-idx3-ubyte.gz": Checksum("bef4ecab320f06d8554ea6380940ec79",
                                                  "8181f5470baa50b63fa0f6fddb340f0a"),
            "t10k-labels-idx1-ubyte.gz": Checksum("bb300cfdad3c16e7a12a480ee83cd310",
                                                  "15d484375f8d13e6eb1aabb0c3f46965"),
        },
    },
}
MD5SUMS = "MD5SUMS"
BLOCK_BYTES = 1 << 20
LARGEST_IDX = 60000 * PIXELS + 16  # the official training images: no official file is longer
# a .gz of the official files is never longer than what it holds plus gzip's few bytes a block
LARGEST_OFFICIAL_GZ = LARGEST_IDX + LARGEST_IDX // 100 + (1 << 16)


class FetchError(Exception):
    """One mirror failed for one file; the next mirror is tried."""


LOCAL_MIRROR = "VAEPIPE_MIRROR"


def mirrors_for(dataset: str, mirror: str | list[str] | None) -> list[str]:
    """Where to look, in turn. For an official data set, $VAEPIPE_MIRROR (a folder or URL on
    this machine, e.g. a shared copy) comes first: its checksums make the files the same
    wherever they come from, so the place is the machine's business, not a param, and a run
    made from a local copy records the same dvc.lock as one made from the internet."""
    mirrors = DATASETS[dataset]["mirrors"] if mirror is None else [mirror] if isinstance(mirror, str) else list(mirror)
    local = os.environ.get(LOCAL_MIRROR, "").strip()
    return [local] + mirrors if local and dataset != "custom" else mirrors


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def _open(location: str, name: str, limits: Limits):
    """A readable stream of `name` at a mirror (URL or folder), or FetchError."""
    try:
        if _is_url(location):
            return urllib.request.urlopen(location.rstrip("/") + "/" + name, timeout=limits.remaining())
        return open(Path(location).expanduser() / name, "rb")
    except urllib.error.HTTPError as error:
        raise FetchError(f"HTTP {error.code}") from None
    except urllib.error.URLError as error:
        raise FetchError(str(error.reason)) from None
    except (OSError, ValueError) as error:  # timeouts, refused connections, missing files
        raise FetchError(getattr(error, "strerror", None) or str(error) or type(error).__name__) from None


def _copy_with_hashes(stream, target: Path, limits: Limits) -> tuple[str, str]:
    """Copy a stream to `target`; its MD5 and SHA-256. A file longer than `max_bytes`, or
    one still arriving at the deadline, is cut off."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    try:
        with stream, open(target, "wb") as out:
            expected = getattr(stream, "length", None)  # HTTP Content-Length, when sent
            if expected is not None and expected > limits.max_bytes:
                raise FetchError(f"{expected} bytes announced, more than the {limits.max_bytes} bytes it can hold")
            written = 0
            while chunk := stream.read(BLOCK_BYTES):
                md5.update(chunk)
                sha256.update(chunk)
                out.write(chunk)
                written += len(chunk)
                if written > limits.max_bytes:
                    raise FetchError(f"more than the {limits.max_bytes} bytes it can hold")
                limits.remaining()
    except (OSError, http.client.HTTPException) as error:  # a cut connection, a read timeout
        if getattr(error, "errno", None) in DISK_FULL:  # not the mirror's fault: no other will do
            raise
        raise FetchError(f"transfer failed ({error})") from None
    if expected is not None and written < expected:  # http.client reports 0 left when cut short
        raise FetchError(f"truncated: {written} bytes of {expected}")
    return md5.hexdigest(), sha256.hexdigest()


def idx_md5(path: Path) -> str | None:
    """MD5 of the IDX bytes inside a .gz file, or None when it does not decompress or holds
    more than any official file (a gzip bomb is not read to its end)."""
    md5, read = hashlib.md5(), 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(BLOCK_BYTES):
                md5.update(chunk)
                read += len(chunk)
                if read > LARGEST_IDX:
                    return None
    except (OSError, EOFError, zlib.error):
        return None
    return md5.hexdigest()


def read_md5sums(location: str, limits: Limits) -> dict[str, str] | None:
    """The `MD5SUMS` file beside a custom data set (md5sum's format); None when the mirror
    has none (404 or no such file); FetchError when it could not answer."""
    try:
        with _open(location, MD5SUMS, limits) as stream:
            data = stream.read(1 << 16)
    except FetchError as error:
        if str(error) in ("HTTP 404", "No such file or directory"):
            return None
        raise
    except (OSError, http.client.HTTPException) as error:
        raise FetchError(f"{MD5SUMS}: transfer failed ({error})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{location}/{MD5SUMS} is not UTF-8 text: write it as md5sum prints it") from None
    sums = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            fields = line.split(maxsplit=1)
            if len(fields) != 2:
                raise UserError(f"{location}/{MD5SUMS} line {number} is not `<md5>  <file>`: "
                                "write it as md5sum prints it")
            sums[fields[1].lstrip("*").strip()] = fields[0].lower()
    return sums


UNVERIFIED = ("set data.sha256 in params.yaml to the files' SHA-256 (sha256sum prints them), put an "
              f"{MD5SUMS} beside them, or set data.verify: false to use unverified files")


def expected_checksums(dataset: str, mirrors: list[str], limits: Limits, *, verify: bool = True,
                       sha256: dict[str, str] | None = None) -> dict[str, Checksum | None]:
    """What each file must hash to. Custom data fails closed: with neither pinned SHA-256s
    nor an MD5SUMS the download stops, unless `verify` is false."""
    if dataset != "custom":
        return DATASETS[dataset]["files"]
    if sha256:
        return {name: Checksum("", "", sha256[name].lower()) for name in FILES}
    failures, answered = [], False
    for location in mirrors:
        try:
            sums = read_md5sums(location, limits)
        except FetchError as error:
            failures.append(f"{location}: {error}")
            continue
        answered = True
        if sums is not None:
            missing = [name for name in FILES if name not in sums]
            if missing:
                raise UserError(f"{location}/{MD5SUMS} lists no checksum for {', '.join(missing)}: "
                                "add a line `<md5>  <file>` for each of the four files")
            return {name: Checksum(sums[name], sums[name]) for name in FILES}
        failures.append(f"{location}: no {MD5SUMS}")
    if not answered:  # no mirror answered at all: the data is out of reach, not unverifiable
        raise UserError(f"could not fetch {MD5SUMS} ({'; '.join(failures)}); set data.mirror in params.yaml "
                        "to a folder or URL holding the four .gz files")
    if verify:
        raise UserError(f"custom data cannot be verified ({'; '.join(failures)}): {UNVERIFIED}")
    print(f"note: data.verify is false: the custom data set at {', '.join(mirrors)} is not "
          "checksum-verified", file=sys.stderr)
    return {name: None for name in FILES}


def fetch_file(name: str, mirrors: list[str], checksum: Checksum | None, target: Path,
               limits: Limits) -> None:
    """Fetch `name` from the first mirror that serves the right bytes into `target`."""
    failures = []
    for location in mirrors:
        try:
            gz_md5, gz_sha256 = _copy_with_hashes(_open(location, name, limits), target, limits)
            if checksum is not None and checksum.sha256 is not None:
                if gz_sha256 != checksum.sha256:
                    raise FetchError(f"checksum mismatch (SHA-256 {gz_sha256}, pinned {checksum.sha256})")
            elif checksum is not None and gz_md5 != checksum.gz and idx_md5(target) != checksum.idx:
                raise FetchError(f"checksum mismatch (MD5 {gz_md5}, expected {checksum.gz})")
            return
        except FetchError as error:
            target.unlink(missing_ok=True)
            failures.append(f"{location}: {error}")
    raise UserError(f"could not fetch {name} ({'; '.join(failures)}); "
                    "set data.mirror in params.yaml to a folder or URL holding the four .gz files")


def download(dataset: str, mirror: str | list[str] | None, raw_dir: Path, timeout: float, *,
             deadline: float = 3600, verify: bool = True, sha256: dict[str, str] | None = None) -> None:
    """Fetch and verify the four IDX files into `raw_dir`, all or nothing."""
    mirrors = mirrors_for(dataset, mirror)
    # an official file's size is known; a custom one must at least fit in memory to be used
    largest = LARGEST_OFFICIAL_GZ if dataset != "custom" else available_memory()
    limits = Limits(timeout, time.monotonic() + deadline, largest)
    checksums = expected_checksums(dataset, mirrors, limits, verify=verify, sha256=sha256)
    with atomic_path(raw_dir, directory=True) as tmp:
        for name in FILES:
            fetch_file(name, mirrors, checksums[name], tmp / name, limits)
            if dataset == "custom":  # the official files are vouched for by their checksums
                check_idx(tmp / name)
            print(f"fetched {name}", file=sys.stderr)
