"""Share this repository's runs, so a teammate's `dvc exp run --pull` restores them.

    python -m vaepipe.runs.share [REMOTE]           (or `make share`)
    python -m vaepipe.runs.share --check [REMOTE]   which shared runs a teammate cannot restore

`dvc push --run-cache` sends every run-cache entry under the cache's `runs/` (another
project's too, where a cache is shared) before the outputs they name, and leaves out the
outputs of entries not in the workspace and every git-tracked output (`metrics/`, `plots/`,
which the run cache keeps in DVC's cache all the same). So this pushes, in this order:
1. the outputs: the workspace's and those every entry of this repository's stages names;
2. then, once all of them are on the remote, the entries themselves.
An interrupted share leaves outputs without entries (harmless; a re-run completes it),
never an entry a teammate would find without its outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def own_entries(repo) -> list[tuple[str, str]]:
    """(key, value) of each local run-cache entry made by one of this repository's stages:
    runs/<2 chars>/<key>/<value>, whose command and outputs are a stage's of dvc.yaml."""
    stages = {(stage.cmd, tuple(sorted(str(out.def_path) for out in stage.outs))) for stage in repo.index.stages}
    runs = Path(repo.stage_cache.cache_dir)
    found = []
    for entry in sorted(runs.glob("*/*/*")):
        cached = repo.stage_cache._load_cache(entry.parent.name, entry.name) if entry.is_file() else None
        if cached and (cached.get("cmd"), tuple(sorted(out["path"] for out in cached.get("outs", [])))) in stages:
            found.append((entry.parent.name, entry.name))
    return found


def _objects(repo, entries) -> set:
    objects = set()
    for found in repo.stage_cache.get_used_objs(entries).values():
        objects |= found
    return objects


def _runs_odb(repo, remote):
    from dvc.exceptions import DvcException
    from dvc.fs import HTTPFileSystem

    try:
        odb = repo.cloud.get_remote_odb(remote, "push --run-cache", hash_name="md5-dos2unix")
    except DvcException as error:
        raise RuntimeError(f"this remote cannot hold a run cache: {error}") from None
    if isinstance(odb.fs, HTTPFileSystem):
        raise RuntimeError(f"{odb.path}: an HTTP remote is read-only for the run cache; "
                           "share through a folder, S3, SSH or WebDAV remote")
    return odb


def push_entries(repo, odb, entries) -> int:
    """Copy each entry to the remote's runs/ unless it is there; the number sent."""
    from dvc.fs import LocalFileSystem, generic

    local = LocalFileSystem()
    sent = 0
    for key, value in entries:
        destination = odb.fs.join(odb.path, "runs", key[:2], key, value)
        if odb.fs.exists(destination):
            continue
        generic.copy(local, repo.stage_cache._get_cache_path(key, value), odb.fs, destination)
        sent += 1
    return sent


def share(remote: str | None = None) -> tuple[int, int]:
    """(entries, objects) the remote received; raises RuntimeError if an output could not
    be sent, before any entry is."""
    from dvc.repo import Repo

    with Repo() as repo:
        odb = _runs_odb(repo, remote)
        entries = own_entries(repo)
        objects = repo.push(remote=remote)  # the workspace's outputs
        result = repo.cloud.push(_objects(repo, entries), remote=remote)
        if result.failed:
            raise RuntimeError(f"{len(result.failed)} outputs could not be sent; no run-cache entry "
                               "was shared; run `make share` again")
        return push_entries(repo, odb, entries), objects + len(result.transferred)


def unrestorable(remote: str | None = None) -> list[str]:
    """The stages of run-cache entries (local, e.g. after `dvc pull --run-cache`) whose
    outputs the remote lacks: a teammate's `--pull` would find the entry, then run it."""
    from dvc.repo import Repo

    with Repo() as repo:
        named = {entry: _objects(repo, [entry]) for entry in own_entries(repo)}
        status = repo.cloud.status(set().union(*named.values()), remote=remote)  # one query for all
        absent = status.missing | status.new  # on neither side, or only here
        missing = []
        for (key, value), objects in named.items():
            if objects & absent:
                cmd = repo.stage_cache._load_cache(key, value)["cmd"]
                missing.append(f"{cmd.split('/')[-1].removesuffix('.py')} ({key[:8]}): "
                               f"{len(objects & absent)} outputs missing")
        return missing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("remote", nargs="?", help="a DVC remote's name (default: the default remote)")
    parser.add_argument("--check", action="store_true", help="list shared runs whose outputs the remote lacks")
    args = parser.parse_args(argv)
    from dvc.exceptions import DvcException

    try:
        if args.check:
            missing = unrestorable(args.remote)
            if missing:
                sys.exit(f"error: {len(missing)} shared runs cannot be restored: {'; '.join(missing)}; "
                         "run `make share` where they were run")
            print("every shared run can be restored")
            return
        entries, objects = share(args.remote)
    except (DvcException, RuntimeError) as error:
        sys.exit(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
    print(f"the remote received {objects} outputs, then {entries} run-cache entries")


if __name__ == "__main__":
    main()
