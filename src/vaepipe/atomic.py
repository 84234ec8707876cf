"""Atomic outputs: write to a temporary name beside the target, then rename.

A reader (or DVC) never sees a half-written file: either the old output, none, or the
complete new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
from pathlib import Path

from vaepipe.errors import UserError

DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}  # no space, file-size limit, quota


@contextlib.contextmanager
def atomic_path(target: str | Path, *, directory: bool = False):
    """Yield a temporary path in target's folder; on success put it in place of `target`.

    The temporary path is named before it is created, so a Ctrl-C landing at any moment
    (the live curves are rewritten just as an epoch's line is printed, when a user is most
    likely to press it) still finds it to remove. It is made with the modes a new file or
    folder gets (0666 or 0777 less the umask), as the target would be. Its contents are
    flushed to disk before the swap, so a power cut never leaves a renamed empty file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
    try:
        if directory:
            tmp.mkdir()
        else:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield tmp
        _fsync_tree(tmp)
        if directory and target.exists():
            swap_folders(tmp, target)  # tmp now holds the old output
            _fsync(target.parent)
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
            _fsync(target.parent)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            raise UserError(f"could not write {target}: {os.strerror(error.errno)}; the previous "
                            "output is unchanged; free disk space and run `dvc repro` again") from None
        raise


RENAME_EXCHANGE = 2  # linux/fs.h: swap two paths in one step


def swap_folders(new: Path, old: Path) -> None:
    """Exchange two folders: at every instant `old`'s path holds one complete folder, or
    (where the one-step exchange is missing and a crash lands between two renames) the old
    one waits complete under `new`'s name + ".old", never deleted."""
    if _exchange(new, old):
        return
    aside = new.with_name(new.name + ".old")
    os.rename(old, aside)
    try:
        os.rename(new, old)
    except BaseException:
        os.rename(aside, old)
        raise
    os.rename(aside, new)


def _exchange(a: Path, b: Path) -> bool:
    """Linux's renameat2(RENAME_EXCHANGE): both paths swapped in one step. False where the
    C library or the file system lacks it."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_cwd = -100  # AT_FDCWD: paths relative to the working folder
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Every file under `path`, then the folders that name them."""
    if path.is_dir():
        for folder, _, files in os.walk(path, topdown=False):
            for name in files:
                _fsync(Path(folder, name))
            _fsync(Path(folder))
    else:
        _fsync(path)


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
