"""A sweep as SkyPilot managed jobs: one `sky jobs launch cloud/experiment.yaml` a point of
the grid, each on its own (spot) machine, each pushing its experiment when done.

    python -m vaepipe.runs.cloud "beta=0.5,1,2,4 d=2,10" [--dry-run] [-- SKY_ARGS]   (make cloud-sweep)

Each word is `param=value,value,…` (commas inside [ ] belong to the value:
project.epochs=[0,5],[0,10]); the grid is every combination, in order. Each job gets
PARAMS (its assignments) and EXP_NAME (e.g. `beta-0.5-d-2`), and `--secret NAME` for each
credential of the task set in this shell, and a checkpoint secret made for the sweep
where the shell sets none. `sky` is SkyPilot's command (`$SKY`, else `sky`).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import secrets
import shlex
import subprocess
import sys

from vaepipe.errors import UserError, printable

TASK = "cloud/experiment.yaml"
SECRETS = ("GIT_TOKEN", "GIT_SSH_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "VAEPIPE_CHECKPOINT_SECRET")
MAX_POINTS = 1000  # a typo such as a pasted list should not start a thousand machines


def split_values(text: str) -> list[str]:
    """`0.5,1,[0,5]` -> ['0.5', '1', '[0,5]']: commas outside brackets separate values."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    return values + [current]


def grid(spec: str) -> list[list[str]]:
    """Every point of `param=v1,v2 other=w1,…` as its list of `param=value` assignments."""
    axes = []
    for word in spec.split():
        name, sep, values = word.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][\w.-]*", name) or not values:
            raise UserError(f"sweep: {printable(word)!r} is not param=value[,value…]; e.g. beta=0.5,1,2")
        options = split_values(values)
        if "" in options:
            raise UserError(f"sweep: {printable(word)!r} has an empty value; separate values by single commas")
        axes.append([f"{name}={value}" for value in options])
    if not axes:
        raise UserError("sweep: no params given; e.g. PARAMS='beta=0.5,1,2,4'")
    points = [list(point) for point in itertools.product(*axes)]
    if len(points) > MAX_POINTS:
        raise UserError(f"sweep: {len(points)} points, more than {MAX_POINTS}; sweep fewer values")
    return points


def experiment_name(point: list[str]) -> str:
    """A name DVC and git accept: `beta=0.5 d=2` -> `beta-0.5-d-2`."""
    name = re.sub(r"[^A-Za-z0-9._]+", "-", "-".join(point)).strip("-.")
    return re.sub(r"\.\.+", ".", name)[:100]


def launch_command(point: list[str], sky: str, sky_args: list[str], env=os.environ) -> list[str]:
    name = experiment_name(point)
    given = [arg for key in SECRETS if env.get(key) for arg in ("--secret", key)]
    return [sky, "jobs", "launch", TASK, "--yes", "--detach-run", "--use-spot", "--name", f"vaepipe-{name}",
            "--env", f"PARAMS={' '.join(point)}", "--env", f"EXP_NAME={name}", *given, *sky_args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", help="the grid: param=value,value … (quote it)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, launch nothing")
    argv = sys.argv[1:] if argv is None else argv
    ours, sky_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    args = parser.parse_args(ours)  # what follows -- goes to every `sky jobs launch` (e.g. --gpus L4:1)
    try:
        points = grid(args.params)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sky = os.environ.get("SKY") or "sky"
    # the key that signs the sweep's checkpoints: a job's replacement machine resumes with it,
    # and a writer of the bucket without it cannot plant a checkpoint (vaepipe.training.checkpoint)
    env = {"VAEPIPE_CHECKPOINT_SECRET": secrets.token_hex(32)} | dict(os.environ)
    for point in points:
        command = launch_command(point, sky, sky_args, env)
        print(shlex.join(command), flush=True)
        if not args.dry_run and subprocess.run(command, env=env).returncode != 0:
            print(f"error: launching {' '.join(point)} failed (see above); the points before it are running",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
