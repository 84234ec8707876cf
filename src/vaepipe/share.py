"""Share every run this machine made, so a teammate's `dvc exp run --pull` restores it.

    python -m vaepipe.share [REMOTE]      (or `make share`)

`dvc push --run-cache` sends the run-cache entries (which params and inputs gave which
outputs) and the workspace's cached outputs, but not the outputs of the other entries,
nor any git-tracked output (`metrics/`, `plots/`: declared `cache: false`, which the run
cache keeps in DVC's cache all the same). A teammate's restore needs every output an entry
names, so this pushes those too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_cache_entries(repo) -> list[tuple[str, str]]:
    """(key, value) of every local run-cache entry: runs/<2 chars>/<key>/<value>."""
    runs = Path(repo.stage_cache.cache_dir)
    return sorted((entry.parent.name, entry.name) for entry in runs.glob("*/*/*") if entry.is_file())


def share(remote: str | None = None) -> tuple[int, int]:
    """Push the run cache and everything its entries name; returns (entries, objects) sent."""
    from dvc.repo import Repo

    with Repo() as repo:
        entries = run_cache_entries(repo)
        repo.push(remote=remote, run_cache=True)
        objects = set()
        for found in repo.stage_cache.get_used_objs(entries).values():
            objects |= found
        result = repo.cloud.push(objects, remote=remote)
    if result.failed:
        raise RuntimeError(f"{len(result.failed)} objects could not be pushed")
    return len(entries), len(result.transferred)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("remote", nargs="?", help="a DVC remote's name (default: the default remote)")
    args = parser.parse_args(argv)
    from dvc.exceptions import DvcException

    try:
        entries, objects = share(args.remote)
    except (DvcException, RuntimeError) as error:
        sys.exit(f"error: {error}")
    print(f"shared {entries} run-cache entries; {objects} objects were new to the remote")


if __name__ == "__main__":
    main()
