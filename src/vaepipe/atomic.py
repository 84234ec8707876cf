"""Atomic outputs: write to a temporary name beside the target, then rename.

A reader (or DVC) never sees a half-written file: either the old output, none, or the
complete new one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from vaepipe.errors import UserError

DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}  # no space, file-size limit, quota
_UMASK = os.umask(0)  # read the process umask (the only way is to set it), then restore
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(target: str | Path, *, directory: bool = False):
    """Yield a temporary path in target's folder; on success rename it onto `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    else:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o777 & ~_UMASK if directory else 0o666 & ~_UMASK)  # mkstemp makes 0600
        if directory and target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            raise UserError(f"could not write {target}: {os.strerror(error.errno)}; the previous "
                            "output is unchanged; free disk space and run `dvc repro` again") from None
        raise


def write_json(target: str | Path, data) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_csv(target: str | Path, rows: list[dict]) -> None:
    """Rows of one shape as CSV; floats in repr form, so equal runs give equal bytes."""
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(repr(row[key]) for key in header) for row in rows]
    write_text(target, "\n".join(lines) + "\n")


def write_tensors(target: str | Path, obj) -> None:
    """torch.save, byte-for-byte reproducible: saved to a path, the archive's root folder
    is named after the (random) temporary file; saved to an open file, as to a buffer, it
    is always "archive", and nothing is held in memory twice."""
    import torch  # here, not at the top: the download stage writes no tensors and skips torch

    with atomic_path(target) as tmp, open(tmp, "wb") as stream:
        torch.save(obj, stream)
