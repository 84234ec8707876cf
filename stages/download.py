"""Stage download: the four IDX files of data.dataset into data/raw/, checksum-verified
(nothing for a folder of images, which the normalize stage reads where it is)."""

from vaepipe.atomic import atomic_path
from vaepipe.stage import run_stage
from vaepipe.data.download import download
from vaepipe.outputs import RAW


def main(params):
    data = params.data
    if data.dataset == "folder":
        with atomic_path(RAW, directory=True) as tmp:  # a note, not nothing: dvc warns of an empty output
            (tmp / "README").write_text("data.dataset is folder: the normalize stage reads data.path\n")
            print(f"data.dataset is folder: nothing to download; normalize reads {data.path}")
        return
    download(data.dataset, data.mirror, RAW, data.timeout, deadline=data.deadline, verify=data.verify,
             sha256=data.sha256)


if __name__ == "__main__":
    run_stage(main)
