"""Training that survives being stopped: the train stage's whole state, saved every
`train.checkpoint_every` epochs to a store outside its outputs, and resumed from there.

DVC deletes a stage's outputs before running it (and `persist: true` would cost the run
cache), so the store is a folder of its own: `$VAEPIPE_CHECKPOINTS`, e.g. a bucket a cloud
machine mounts, or else `~/.cache/vaepipe/checkpoints`. A checkpoint is named by a key of
everything that shapes the run's bits (its params, the project's code, the data's bytes,
PyTorch's version and the device), so only the same run resumes from it, and a resumed
run ends byte-identical to one never stopped. A finished run removes its checkpoint.

Whoever may write to the store (a team bucket, a cloud role) must not be able to plant a
run: every checkpoint carries an HMAC-SHA256 of its bytes under a secret that is not in the
store ($VAEPIPE_CHECKPOINT_SECRET, else a key file of the user's own), checked before a
byte of it is unpickled; what it restores is then checked again by `train.Run.restore`.
It also carries the machine's fingerprint: by default only the machine kind that made it
resumes it (`train.resume_across_machines`).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import hmac
import io
import json
import os
import secrets
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

from vaepipe.atomic import atomic_path
from vaepipe.errors import UserError, printable
from vaepipe.params import dotted
from vaepipe.data.tensorfile import refuse_compressed

STORE = "VAEPIPE_CHECKPOINTS"
SECRET = "VAEPIPE_CHECKPOINT_SECRET"
SECRET_FILE = "VAEPIPE_CHECKPOINT_SECRET_FILE"
FORMAT = 2  # bumped when the saved state's layout changes: an older file is then set aside
MAGIC = b"vaepipe checkpoint 2\n"  # then the HMAC (32 bytes), then torch.save's archive
MAC_BYTES = 32
# how often to save, and whether another machine's checkpoint may resume, change no bit of the run
UNKEYED = {"train.checkpoint_every", "train.resume_across_machines"}


def store() -> Path:
    """The folder checkpoints live in: $VAEPIPE_CHECKPOINTS, else the user's cache."""
    if os.environ.get(STORE):
        return Path(os.environ[STORE]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaepipe" / "checkpoints"


def secret() -> bytes:
    """The key checkpoints are signed with: $VAEPIPE_CHECKPOINT_SECRET, or the file that
    $VAEPIPE_CHECKPOINT_SECRET_FILE names (a cloud run's machines share it as a launch secret,
    which cloud/run.sh hands over as a file, out of every stage's environment), else a random
    key made once in the user's own config folder ($XDG_CONFIG_HOME or ~/.config,
    vaepipe/checkpoint-secret, readable by the user alone)."""
    given, where = os.environ.get(SECRET), f"${SECRET}"
    if not given and os.environ.get(SECRET_FILE):
        where = f"the file ${SECRET_FILE} names ({os.environ[SECRET_FILE]})"
        try:
            given = Path(os.environ[SECRET_FILE]).read_text().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"{where} cannot be read ({getattr(error, 'strerror', None) or error}); "
                            f"point ${SECRET_FILE} at a file holding the secret") from None
    if given:
        if len(given) < 16:
            raise UserError(f"{where} is shorter than 16 characters; set it to a random value, "
                            "e.g. `openssl rand -hex 32`")
        return given.encode()
    path = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "vaepipe" / "checkpoint-secret"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(secrets.token_hex(32))
    except FileExistsError:
        pass
    except OSError as error:
        raise UserError(f"the checkpoint secret {path} cannot be made ({error.strerror}); set ${SECRET} "
                        "to a random value, or train.checkpoint_every: 0") from None
    return path.read_bytes().strip()


def run_key(params, data_files: list[Path], device: torch.device) -> str:
    """SHA-256 of what makes a run's bits: every param but UNKEYED, every module of the
    project and the stage's script, the data files' bytes, the packages' versions and the
    kind of device."""
    digest = hashlib.sha256()
    values = {key: value for key, value in dotted(dataclasses.asdict(params)).items() if key not in UNKEYED}
    digest.update(json.dumps(values, sort_keys=True).encode())
    package = Path(__file__).parents[1]  # vaepipe/, every wing: a module moved is other code
    script = getattr(sys.modules["__main__"], "__file__", None)
    modules = [(str(path.relative_to(package)), path) for path in sorted(package.rglob("*.py"))]
    for name, path in modules + ([("script", Path(script))] if script else []) + [
            (path.name, path) for path in data_files]:
        digest.update(f"\0{name}\0".encode())
        with open(path, "rb") as stream:
            digest.update(hashlib.file_digest(stream, "sha256").digest())
    digest.update(f"\0torch {torch.__version__} numpy {np.__version__} {device.type}".encode())
    return digest.hexdigest()



class Checkpoints:
    """One run's checkpoint in the store: saved every `every` epochs (0: never), loaded
    back when the same run starts again, set aside when damaged or not signed with this
    user's secret, removed when done. One run at a time holds a key's checkpoint (a lock
    file beside it); another run with the same key trains without checkpoints."""

    def __init__(self, key: str, every: int, machine: dict, folder: Path | None = None):
        self.folder = Path(folder) if folder is not None else store()
        self.path = self.folder / f"train-{key[:32]}.pt"
        self.key, self.every = key, every
        self.machine = machine  # this machine's fingerprint: saved with each checkpoint
        self.saved_epoch: int | None = None
        self._lock: int | None = None

    def due(self, epoch: int) -> bool:
        return self.every > 0 and epoch > 0 and epoch % self.every == 0

    def _mac(self, stream, start: int) -> bytes:
        """HMAC of the key and the archive from `start` on, read a megabyte at a time."""
        mac = hmac.new(secret(), MAGIC + self.key.encode(), hashlib.sha256)
        stream.seek(start)
        while chunk := stream.read(1 << 20):
            mac.update(chunk)
        return mac.digest()

    def save(self, epoch: int, state: dict) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w+b") as stream:
            stream.write(MAGIC + bytes(MAC_BYTES))
            torch.save({"format": FORMAT, "key": self.key, "epoch": epoch, "machine": self.machine, "state": state},
                       stream)
            mac = self._mac(stream, len(MAGIC) + MAC_BYTES)
            stream.seek(len(MAGIC))
            stream.write(mac)
        self.saved_epoch = epoch

    def _take_lock(self) -> bool:
        """Hold the key's lock file for this process's life; False when another run holds it.
        (Where the file system has no locks, e.g. some bucket mounts, runs are not kept apart.)"""
        lock = self.folder / f".{self.path.name}.lock"
        while True:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                return False
            except OSError:
                os.close(descriptor)
                return True
            try:
                if os.stat(lock).st_ino == os.fstat(descriptor).st_ino:  # not one removed meanwhile
                    self._lock = descriptor
                    return True
            except FileNotFoundError:
                pass
            os.close(descriptor)

    def load(self) -> tuple[int, dict, dict] | None:
        """(epoch, state, machine) of this run's checkpoint, or None when there is none or it is
        unusable (then set aside). Leftovers of a write stopped midway are removed. A store
        that cannot be written is one line now, not after the first epoch."""
        if self.every == 0:
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not os.access(self.folder, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            locked = self._take_lock()
        except OSError as error:
            raise UserError(f"the checkpoint store {self.folder} cannot be written ({error.strerror}); set "
                            f"${STORE} to a folder you may write, or train.checkpoint_every: 0") from None
        if not locked:
            print(f"warning: another run with the same params, code and data holds {self.path}; this run "
                  "trains without checkpoints", file=sys.stderr)
            self.every = 0
            return None
        secret()  # a secret that cannot be made is one line before training, not after an epoch
        for leftover in self.folder.glob(f".{self.path.name}.*.tmp"):
            _remove(leftover)
        if not os.path.lexists(self.path):
            return None
        try:
            epoch, state, machine = self._read()
        except Exception as error:  # any damage: a truncated zip, a forged file, a wrong layout
            self.set_aside(error)
            return None
        self.saved_epoch = epoch
        return epoch, state, machine

    def _read(self) -> tuple[int, dict, dict]:
        if not self.path.is_file() or self.path.is_symlink():
            raise ValueError("not a regular file")
        with open(self.path, "rb") as stream:
            if stream.read(len(MAGIC)) != MAGIC:
                raise ValueError("not a checkpoint of this format")
            mac = stream.read(MAC_BYTES)
            if not hmac.compare_digest(mac, self._mac(stream, len(MAGIC) + MAC_BYTES)):
                raise ValueError(f"its signature does not match this user's checkpoint secret (${SECRET}): "
                                 "altered, or made by someone else")
            stream.seek(len(MAGIC) + MAC_BYTES)
            archive = io.BytesIO(stream.read())
        with zipfile.ZipFile(archive) as entries:
            refuse_compressed(entries)
        archive.seek(0)
        saved = torch.load(archive, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or saved.get("format") != FORMAT or saved.get("key") != self.key:
            raise ValueError("not a checkpoint of this run")
        epoch, state, machine = saved.get("epoch"), saved.get("state"), saved.get("machine")
        if type(epoch) is not int or epoch < 1 or not isinstance(state, dict) or not isinstance(machine, dict):
            raise ValueError("no epoch, state or machine in it")
        return epoch, state, machine

    def set_aside(self, error: Exception) -> None:
        aside = self.path.with_name(self.path.name + ".damaged")
        _remove(aside)
        os.replace(self.path, aside)
        reason = printable((str(error).splitlines() or [type(error).__name__])[0][:160])
        print(f"warning: the checkpoint {self.path} could not be used ({reason}); set aside as {aside.name}, "
              "training starts from epoch 0", file=sys.stderr)
        self.saved_epoch = None

    def remove(self) -> None:
        if self.every == 0 and self._lock is None:
            return  # never ours: another run's, or none
        self.path.unlink(missing_ok=True)
        if self._lock is not None:
            os.unlink(self.folder / f".{self.path.name}.lock")  # while held: a waiting run opens a new one
            os.close(self._lock)
            self._lock = None


def _remove(path: Path) -> None:
    """A file, link or folder at `path`, whichever it is (a leftover, or something planted)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
