"""Stage download: the four IDX files of data.dataset into data/raw/, checksum-verified."""

from vaepipe.cli import run_stage
from vaepipe.download import download
from vaepipe.paths import RAW


def main(params):
    download(params.data.dataset, params.data.mirror, RAW, params.data.timeout)


if __name__ == "__main__":
    run_stage(main)
