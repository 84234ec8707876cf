"""What a stage may use of this machine: its cores, and the memory it will need, estimated
from params before any of it is allocated.

Each estimate names the params that drive it, so a value too large for this machine stops
the stage with one line naming the key, the estimate and the limit, instead of a traceback
from the allocator minutes later. The estimates are upper bounds of the large tensors a
stage holds at once (float32), not of Python's own few hundred MB.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vaepipe.errors import UserError

if TYPE_CHECKING:  # torch is imported only to ask a GPU: the download stage runs without it
    import torch

BYTE = 1  # a stored pixel
FLOAT = 4  # bytes per float32
GB = 1 << 30


def available_memory(device: torch.device | None = None) -> int:
    """Bytes a stage may allocate: free GPU memory on CUDA, else the host's available RAM."""
    if device is not None and device.type == "cuda":
        import torch
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system keeps one (Linux:
    taskset, a container's CPU set), else every core (macOS has no affinity to ask)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def size(nbytes: float) -> str:
    return f"{nbytes / GB:.1f} GB" if nbytes >= GB / 10 else f"{nbytes / (1 << 20):.0f} MB"


def check_fits(needs: dict[str, float], device: torch.device | None = None) -> None:
    """`needs` maps a param key to the bytes it makes the stage allocate; all of them must
    fit together. Names the largest when they do not."""
    limit = available_memory(device)
    total = sum(needs.values())
    if total > limit:
        key = max(needs, key=needs.get)
        where = "GPU memory free" if device is not None and device.type == "cuda" else "memory available"
        raise UserError(f"{key}: needs about {size(needs[key])} ({size(total)} for the stage in all), "
                        f"more than the {size(limit)} of {where}; lower {key}")
