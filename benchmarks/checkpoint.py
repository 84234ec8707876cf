"""The cost of resumable training: an epoch of the train stage's loop (train, score the test
set, record) with and without saving its checkpoint after it, alternating in one run, on
the whole MNIST beside the checkout (or $VAEPIPE_MNIST) with params.yaml's settings.

The checkpoint holds what the stage's would hold at that epoch: the model, Adam's moments,
every RNG state and the history with the test codes of every epoch so far (the default
run keeps them all), written to a temporary store as the stage writes it (atomically,
flushed to disk). The last line is `checkpoint_cost=X.XXX save_share=Y.YYY`: the median epoch
with a checkpoint over the median without (the machine's noise shows in it, either side of
1), and the median save alone over the median epoch without (the cost itself).

    python benchmarks/checkpoint.py [--rounds 5] [--store FOLDER]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
from support import isa, parse_with_mnist  # noqa: E402
from vaepipe.training.checkpoint import Checkpoints  # noqa: E402
from vaepipe.fingerprint import machine  # noqa: E402
from vaepipe.data.idx import read_split  # noqa: E402
from vaepipe.evaluation.metrics import score  # noqa: E402
from vaepipe.params import load_params  # noqa: E402
from vaepipe.stage import keep_freed_memory  # noqa: E402
from vaepipe.training.loop import start_run, train_epoch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--store", type=Path, default=None, help="the checkpoint folder (default: a temporary one)")
    args = parse_with_mnist(parser)
    keep_freed_memory()
    params = load_params(ROOT / "params.yaml")
    train_x = torch.from_numpy(read_split(args.mnist, "train")[0])
    test_x = torch.from_numpy(read_split(args.mnist, "test")[0])
    run = start_run(params, train_x.shape[1], torch.device("cpu"))
    options = {"beta": params.trained_beta, "likelihood": params.train.likelihood}
    with tempfile.TemporaryDirectory(dir=args.store) as store:
        checkpoints = Checkpoints("0" * 64, 1, machine(), Path(store))
        times = {False: [], True: []}
        saves, epoch = [], 0
        for _ in range(args.rounds):
            for with_checkpoint in (False, True):
                epoch += 1
                start = time.perf_counter()
                terms = train_epoch(run.model, run.optimizer, train_x, epoch=epoch,
                                    batch_size=params.train.batch_size, generator=run.order, progress=False,
                                    pixels=None, **options)
                test_terms, mu, logvar = score(run.model, test_x, **options)
                run.history.record(epoch, params.trained_beta, terms, test_terms, mu, logvar)
                if with_checkpoint:
                    saving = time.perf_counter()
                    checkpoints.save(epoch, run.state())
                    saves.append(time.perf_counter() - saving)
                times[with_checkpoint].append(time.perf_counter() - start)
        size = checkpoints.path.stat().st_size
    without, with_ = statistics.median(times[False]), statistics.median(times[True])
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, batch {params.train.batch_size}, "
          f"{args.rounds} rounds; the last checkpoint {size / 1e6:.1f} MB")
    print(f"epoch without checkpoint: median {without:.3f} s ({min(times[False]):.3f}-{max(times[False]):.3f})")
    print(f"epoch with checkpoint:    median {with_:.3f} s ({min(times[True]):.3f}-{max(times[True]):.3f}); "
          f"the save alone: median {statistics.median(saves) * 1000:.1f} ms")
    print(f"checkpoint_cost={with_ / without:.3f} save_share={statistics.median(saves) / without:.3f} isa={isa()}")


if __name__ == "__main__":
    main()
