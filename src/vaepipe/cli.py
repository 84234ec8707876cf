"""The one entry point every stage script goes through.

It loads params, runs the stage, and turns every expected failure into one line on stderr
and a non-zero exit code. Outputs are written atomically (`vaepipe.atomic`), so a stage
that stops early leaves nothing half-written.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

from vaepipe.errors import Interrupted, UserError
from vaepipe.params import Params, load_params


def _raise_interrupted(signum, frame):
    raise Interrupted(f"stopped by {signal.Signals(signum).name}: nothing was written; "
                      "run `dvc repro` to start the stage again")


def run_stage(main: Callable[[Params], None]) -> None:
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        main(load_params())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


def require(path: str | Path, stage: str) -> Path:
    """The input `path`, or a one-line error naming the stage that makes it."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run `dvc repro {stage}` first")
    return path
