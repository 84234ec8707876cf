"""The one entry point every stage script goes through.

It loads params, runs the stage, and turns every expected failure into one line on stderr
and a non-zero exit code. Outputs are written atomically (`vaepipe.atomic`), so a stage
that stops early leaves nothing half-written.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from vaepipe.errors import Interrupted, UserError, printable
from vaepipe.params import Params, load_params


def _raise_interrupted(signum, frame):
    raise Interrupted(f"stopped by {signal.Signals(signum).name}: nothing was written; "
                      "run `dvc repro` to start the stage again")


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> None:
    """Let glibc keep freed blocks for the next allocation instead of returning them to the
    kernel: by default a loop that frees and re-allocates a few MB of tensors a step has its
    pages unmapped and faulted in again every step, and the stage spends its time in the
    kernel. Costs some peak memory; nothing to do where the C library is not glibc."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None and sys.platform.startswith("linux"):
        mallopt(M_TRIM_THRESHOLD, 1 << 30)  # keep up to 1 GB free at the heap's top
        mallopt(M_MMAP_THRESHOLD, 32 << 20)  # blocks under 32 MB (glibc's maximum) from the heap


def leave(code: int) -> None:
    """Exit without the interpreter's teardown, in which PyTorch alone spends time and
    raises the process's peak memory, in every stage. Only for a finished stage
    (or one that failed as expected): every output is written and closed by then, and only
    the standard streams need flushing. (A profiler that reports at exit needs `main` run
    directly.)"""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_stage(main: Callable[[Params], None]) -> None:
    keep_freed_memory()
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        main(load_params())
    except UserError as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        leave(error.exit_code)
    leave(0)


def require(path: str | Path, stage: str) -> Path:
    """The input `path`, or a one-line error naming the stage that makes it."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run `dvc repro {stage}` first")
    return path
