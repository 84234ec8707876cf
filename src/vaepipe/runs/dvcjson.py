"""The answer of a `dvc … --json` command, for the tools that read DVC's view of the runs
(`vaepipe.runs.review`, `vaepipe.runs.table`); a failure is one line naming the command."""

from __future__ import annotations

import json
import subprocess

from vaepipe.errors import UserError


def dvc_json(*args: str, cwd=None) -> dict | list:
    result = subprocess.run(["dvc", *args, "--json"], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"dvc {' '.join(args[:2])} failed: {last[:200]}")
    return json.loads(result.stdout or "{}")
