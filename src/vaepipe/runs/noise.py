"""Whether a change of a metric means something: the spread that a change of seed gives the
default run (docs/spread.json, measured by experiments/spread.py: five seeds on the whole
MNIST). Two runs that differ only in their seed (or in the machine's rounding, which
training amplifies as much) differ by √2 σ on average; a change within NOISE_SIGMAS · √2 σ
is marked as within noise, so a reviewer knows which changes to read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

SPREAD = Path("docs/spread.json")
NOISE_SIGMAS = 2.0  # two standard deviations of a difference: 95 % of reseeded runs fall within
MARK = "≈"  # beside a change within noise


def spread(path: Path = SPREAD) -> dict[str, float]:
    """Each metric's standard deviation over seeds; {} where the file is missing or unreadable."""
    try:
        metrics = json.loads(path.read_text())["metrics"]
        return {key: float(value["std"]) for key, value in metrics.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def within_noise(metric: str, difference, stds: dict[str, float]) -> bool | None:
    """True when `difference` lies within what reseeding gives, False beyond, None when
    unknown (no measured spread for the metric, or no number)."""
    if metric not in stds or not isinstance(difference, (int, float)) or isinstance(difference, bool):
        return None
    return abs(difference) <= NOISE_SIGMAS * math.sqrt(2) * stds[metric]


LEGEND = f"{MARK}: within what reseeding the default run gives ({NOISE_SIGMAS:g}·√2·σ, docs/spread.json)"
