"""Training that survives being stopped: the train stage's whole state, saved every
`train.checkpoint_every` epochs to a store outside its outputs, and resumed from there.

DVC deletes a stage's outputs before running it (and `persist: true` would cost the run
cache), so the store is a folder of its own: `$VAEPIPE_CHECKPOINTS`, e.g. a bucket a cloud
machine mounts, or else `~/.cache/vaepipe/checkpoints`. A checkpoint is named by a key of
everything that shapes the run's bits (its params, the project's code, the data's bytes,
PyTorch's version and the device), so only the same run resumes from it, and a resumed
run ends byte-identical to one never stopped. A finished run removes its checkpoint.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from vaepipe.atomic import write_tensors
from vaepipe.errors import UserError
from vaepipe.params import dotted

STORE = "VAEPIPE_CHECKPOINTS"
FORMAT = 1  # bumped when the saved state's layout changes: an older file is then set aside
UNKEYED = {"train.checkpoint_every"}  # how often to save changes no bit of the run


def store() -> Path:
    """The folder checkpoints live in: $VAEPIPE_CHECKPOINTS, else the user's cache."""
    if os.environ.get(STORE):
        return Path(os.environ[STORE]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaepipe" / "checkpoints"


def run_key(params, data_files: list[Path], device: torch.device) -> str:
    """SHA-256 of what makes a run's bits: every param but UNKEYED, every module of the
    project and the stage's script, the data files' bytes, the packages' versions and the
    kind of device."""
    digest = hashlib.sha256()
    values = {key: value for key, value in dotted(dataclasses.asdict(params)).items() if key not in UNKEYED}
    digest.update(json.dumps(values, sort_keys=True).encode())
    package = Path(__file__).parent
    script = getattr(sys.modules["__main__"], "__file__", None)
    for path in sorted(package.glob("*.py")) + ([Path(script)] if script else []) + list(data_files):
        digest.update(f"\0{path.name}\0".encode())
        with open(path, "rb") as stream:
            digest.update(hashlib.file_digest(stream, "sha256").digest())
    digest.update(f"\0torch {torch.__version__} numpy {np.__version__} {device.type}".encode())
    return digest.hexdigest()



class Checkpoints:
    """One run's checkpoint in the store: saved every `every` epochs (0: never), loaded
    back when the same run starts again, set aside when damaged, removed when done."""

    def __init__(self, key: str, every: int, folder: Path | None = None):
        self.folder = Path(folder) if folder is not None else store()
        self.path = self.folder / f"train-{key[:32]}.pt"
        self.key, self.every = key, every
        self.saved_epoch: int | None = None

    def due(self, epoch: int) -> bool:
        return self.every > 0 and epoch > 0 and epoch % self.every == 0

    def save(self, epoch: int, state: dict) -> None:
        write_tensors(self.path, {"format": FORMAT, "key": self.key, "epoch": epoch, "state": state})
        self.saved_epoch = epoch

    def load(self) -> tuple[int, dict] | None:
        """(epoch, state) of this run's checkpoint, or None when there is none or it is
        unreadable (then set aside). Leftovers of a write stopped midway are removed. A store
        that cannot be written is one line now, not after the first epoch."""
        if self.every > 0:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                if not os.access(self.folder, os.W_OK | os.X_OK):
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            except OSError as error:
                raise UserError(f"the checkpoint store {self.folder} cannot be written ({error.strerror}); set "
                                f"${STORE} to a folder you may write, or train.checkpoint_every: 0") from None
        for leftover in self.folder.glob(f".{self.path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(saved, dict) or saved.get("format") != FORMAT or saved.get("key") != self.key:
                raise ValueError("not a checkpoint of this run")
            epoch, state = saved["epoch"], saved["state"]
            if type(epoch) is not int or epoch < 1 or not isinstance(state, dict):
                raise ValueError("no epoch or state in it")
        except Exception as error:  # any damage: a truncated zip, a foreign pickle, a wrong layout
            self.set_aside(error)
            return None
        self.saved_epoch = epoch
        return epoch, state

    def set_aside(self, error: Exception) -> None:
        aside = self.path.with_name(self.path.name + ".damaged")
        os.replace(self.path, aside)
        reason = (str(error).splitlines() or [type(error).__name__])[0][:120]
        print(f"warning: the checkpoint {self.path} could not be used ({reason}); set aside as {aside.name}, "
              "training starts from epoch 0", file=sys.stderr)
        self.saved_epoch = None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
