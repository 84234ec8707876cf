"""Stage download: the four IDX files of data.dataset into data/raw/, checksum-verified."""

from vaepipe.cli import run_stage
from vaepipe.download import download
from vaepipe.paths import RAW


def main(params):
    data = params.data
    download(data.dataset, data.mirror, RAW, data.timeout, deadline=data.deadline, verify=data.verify,
             sha256=data.sha256)


if __name__ == "__main__":
    run_stage(main)
