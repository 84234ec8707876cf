"""download and normalize: real download code against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from support import (FASHION, ROOT, refused_url, run_stage, set_params, stage_env, synthetic_digits,
                      write_dataset)
from vaepipe.data.splits import first_images, load_split, unit
from vaepipe.errors import UserError
from vaepipe.data.tensorfile import STORAGE_TYPES, read_tensors, write_arrays
from vaepipe.data.download import DATASETS
from vaepipe.data.idx import read_split
from vaepipe.layout import FILES, SPLITS

RAW = "data/raw"


def raw_files(workdir):
    raw = workdir / RAW
    return sorted(p.name for p in raw.iterdir()) if raw.exists() else []


def no_leftovers(workdir) -> bool:
    """Nothing half-written: no data/raw and no temporary folder beside it."""
    data = workdir / "data"
    return not data.exists() or not any(data.iterdir())


def test_custom_mirror_is_fetched_and_verified(tmp_path, workdir, serve):
    mirror = serve(write_dataset(tmp_path / "mirror"))
    set_params(workdir, data__dataset="custom", data__mirror=mirror.url)
    result = run_stage("download", workdir, without="torch")  # layout and idx are numpy-only
    assert result.returncode == 0, result.stderr
    assert raw_files(workdir) == sorted(FILES)
    for name in FILES:
        assert (workdir / RAW / name).read_bytes() == (tmp_path / "mirror" / name).read_bytes()
    assert set(mirror.requests) == {*FILES, "MD5SUMS"}


def test_same_files_offered_as_mnist_are_refused(tmp_path, workdir, serve):
    mirror = serve(write_dataset(tmp_path / "mirror"))
    set_params(workdir, data__dataset="mnist", data__mirror=mirror.url)
    result = run_stage("download", workdir)
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr and "Traceback" not in result.stderr
    assert no_leftovers(workdir)


def test_wrong_checksum_is_rejected_and_nothing_is_left(tmp_path, workdir, serve):
    folder = write_dataset(tmp_path / "mirror")
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the file MD5SUMS describes")
    mirror = serve(folder)
    set_params(workdir, data__dataset="custom", data__mirror=mirror.url)
    result = run_stage("download", workdir)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: could not fetch t10k-labels-idx1-ubyte.gz")
    assert "checksum mismatch" in lines[-1] and "data.mirror" in lines[-1]
    assert no_leftovers(workdir)


@pytest.mark.parametrize("status", [404, 500])
def test_failing_mirror_falls_through_to_the_next(tmp_path, workdir, serve, status):
    folder = write_dataset(tmp_path / "mirror")
    broken, good = serve(folder, {"*": status}), serve(folder)
    set_params(workdir, data__dataset="custom", data__mirror=[broken.url, good.url])
    result = run_stage("download", workdir)
    assert result.returncode == 0, result.stderr
    assert raw_files(workdir) == sorted(FILES)
    assert set(FILES) <= set(broken.requests) and set(FILES) <= set(good.requests)


def test_custom_data_without_checksums_fails_closed(tmp_path, workdir):
    folder = write_dataset(tmp_path / "mirror", md5sums=False)
    set_params(workdir, data__dataset="custom", data__mirror=str(folder))
    result = run_stage("download", workdir)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: custom data cannot be verified") and "data.verify: false" in result.stderr
    assert no_leftovers(workdir)


def test_unverified_custom_data_only_when_asked_for_and_said(tmp_path, workdir):
    folder = write_dataset(tmp_path / "mirror", md5sums=False)
    set_params(workdir, data__dataset="custom", data__mirror=str(folder), data__verify=False)
    result = run_stage("download", workdir)
    assert result.returncode == 0, result.stderr
    assert "data.verify is false" in result.stderr and "not checksum-verified" in result.stderr
    assert raw_files(workdir) == sorted(FILES)


def test_an_md5sums_the_mirror_fails_to_serve_is_not_skipped(tmp_path, workdir, serve):
    """A 500 for MD5SUMS is not "no MD5SUMS": the files are not used unverified."""
    mirror = serve(write_dataset(tmp_path / "mirror"), {"MD5SUMS": 500})
    set_params(workdir, data__dataset="custom", data__mirror=mirror.url)
    result = run_stage("download", workdir)
    assert result.returncode == 1 and "HTTP 500" in result.stderr and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: could not fetch MD5SUMS")
    assert no_leftovers(workdir)


def test_non_utf8_md5sums_is_one_line(tmp_path, workdir):
    folder = write_dataset(tmp_path / "mirror")
    (folder / "MD5SUMS").write_bytes(b"\xff\xfe\x00 not text")
    set_params(workdir, data__dataset="custom", data__mirror=str(folder))
    result = run_stage("download", workdir)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "not UTF-8" in result.stderr


def test_pinned_sha256_is_checked_instead_of_md5sums(tmp_path, workdir, serve):
    folder = write_dataset(tmp_path / "mirror", md5sums=False)
    pins = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in FILES}
    mirror = serve(folder)
    set_params(workdir, data__dataset="custom", data__mirror=mirror.url, data__sha256=pins)
    result = run_stage("download", workdir)
    assert result.returncode == 0, result.stderr
    assert "MD5SUMS" not in mirror.requests
    pins["t10k-images-idx3-ubyte.gz"] = "0" * 64
    set_params(workdir, data__sha256=pins)
    shutil.rmtree(workdir / "data")
    result = run_stage("download", workdir)
    assert result.returncode == 1 and "SHA-256" in result.stderr and "pinned" in result.stderr
    assert no_leftovers(workdir)


def test_a_file_longer_than_it_can_be_is_cut_off(tmp_path, workdir, serve):
    """An official file is never longer than 60 000 images; a mirror serving more is cut off
    at that size, and the download says so in one line."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(os.urandom(48 * 1024 * 1024))
    mirror = serve(folder)
    set_params(workdir, data__dataset="mnist", data__mirror=mirror.url)
    result = run_stage("download", workdir)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "bytes it can hold" in result.stderr, result.stderr
    assert no_leftovers(workdir)


def test_local_mirror_of_an_official_set_comes_first_and_is_still_verified(tmp_path, workdir, serve):
    """$VAEPIPE_MIRROR serves an official set with data.mirror left null: the same params,
    so the same dvc.lock, as a download from the internet; other bytes there are refused,
    and it is never consulted for custom data, whose place is a param."""
    if not FASHION.exists():
        pytest.skip(f"Debian's dataset-fashion-mnist is not installed ({FASHION})")
    set_params(workdir, data__dataset="fashion-mnist", data__mirror=None)
    env = dict(stage_env(), VAEPIPE_MIRROR=str(FASHION))
    result = subprocess.run([sys.executable, str(ROOT / "stages/download.py")], cwd=workdir, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert raw_files(workdir) == sorted(FILES)
    shutil.rmtree(workdir / "data")
    env["VAEPIPE_MIRROR"] = str(write_dataset(tmp_path / "other"))  # not Fashion-MNIST's bytes
    result = subprocess.run([sys.executable, str(ROOT / "stages/download.py")], cwd=workdir, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "checksum mismatch" in result.stderr
    assert no_leftovers(workdir)


def test_the_download_stops_at_its_deadline(tmp_path, workdir, serve):
    mirror = serve(write_dataset(tmp_path / "mirror"), {"*": "slow"})
    set_params(workdir, data__dataset="custom", data__mirror=[mirror.url, mirror.url], data__deadline=1,
               data__timeout=30)
    result = run_stage("download", workdir)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "data.deadline" in result.stderr, result.stderr


def test_no_mirror_answering_gives_one_line(workdir):
    set_params(workdir, data__mirror=[refused_url(), refused_url()])
    result = run_stage("download", workdir)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "could not fetch train-images-idx3-ubyte.gz" in result.stderr
    assert "refused" in result.stderr and "set data.mirror" in result.stderr
    assert no_leftovers(workdir)


def test_normalize_keeps_the_bytes_and_unit_gives_exactly_bytes_over_255(tmp_path, workdir, serve):
    write_dataset(tmp_path / "mirror", train=300, test=70, seed=5)
    set_params(workdir, data__dataset="custom", data__mirror=str(tmp_path / "mirror"))
    assert run_stage("download", workdir).returncode == 0
    result = run_stage("normalize", workdir, without="torch")  # it writes the splits as arrays
    assert result.returncode == 0, result.stderr
    for split, n, seed in (("train", 300, 5), ("test", 70, 6)):
        saved = torch.load(workdir / f"data/normalized/{split}.pt", weights_only=True)
        images, labels = synthetic_digits(n, seed)
        assert saved["images"].dtype == torch.uint8 and saved["images"].shape == (n, 784)
        assert torch.equal(saved["images"], torch.from_numpy(images.reshape(n, 784)))
        # the floats the model sees: numpy's float32 division, as the splits held them before
        expected = torch.from_numpy(images.reshape(n, 784).astype(np.float32) / np.float32(255))
        assert torch.equal(unit(saved["images"]), expected) and unit(expected) is expected
        assert saved["labels"].dtype == torch.int64
        assert torch.equal(saved["labels"], torch.from_numpy(labels.astype(np.int64)))
    path = workdir / "data/normalized/train.pt"
    assert torch.equal(first_images(path, 100), load_split(path)[0][:100])
    assert torch.equal(first_images(path, 10_000), load_split(path)[0])  # more than there are: all


def test_dataset_checksums_are_torchvisions():
    from torchvision.datasets import MNIST, FashionMNIST

    for dataset, source in (("mnist", MNIST), ("fashion-mnist", FashionMNIST)):
        ours = {name: checksum.gz for name, checksum in DATASETS[dataset]["files"].items()}
        assert ours == dict(source.resources)
        assert DATASETS[dataset]["mirrors"] == source.mirrors


def test_real_mnist_files_pass_a_checksum(mnist):
    """Three are the official .gz files; train-images was recompressed, so only its IDX
    bytes match (see shared/data/mnist/README.md): both ways must be accepted."""
    for name in FILES:
        checksum = DATASETS["mnist"]["files"][name]
        path = mnist / name
        assert hashlib.md5(gzip.decompress(path.read_bytes())).hexdigest() == checksum.idx
        gz_matches = hashlib.md5(path.read_bytes()).hexdigest() == checksum.gz
        assert gz_matches == (name != "train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not FASHION.exists(), reason=f"{FASHION} is absent: apt-get install dataset-fashion-mnist")
def test_fashion_mnist_at_full_size_from_debians_package(workdir):
    set_params(workdir, data__dataset="fashion-mnist", data__mirror=str(FASHION))
    result = run_stage("download", workdir)
    assert result.returncode == 0, result.stderr
    result = run_stage("normalize", workdir)
    assert result.returncode == 0, result.stderr
    for split, n in (("train", 60000), ("test", 10000)):
        saved = torch.load(workdir / f"data/normalized/{split}.pt", weights_only=True)
        images, labels = saved["images"], saved["labels"]
        assert images.shape == (n, 784) and labels.shape == (n,)
        assert images.dtype == torch.uint8 and images.min() == 0 and images.max() == 255
        assert torch.bincount(labels).tolist() == [n // 10] * 10


def test_read_split_matches_the_real_mnist_digits(mnist):
    images, labels = read_split(mnist, "test")
    assert images.shape == (10000, 784) and labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert SPLITS["test"][0] == "t10k-images-idx3-ubyte.gz"
    images, labels = read_split(mnist, "train")
    assert images.shape == (60000, 784) and labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_local_mirror_is_never_consulted_for_custom_data(monkeypatch):
    from vaepipe.data.download import mirrors_for
    monkeypatch.setenv("VAEPIPE_MIRROR", "/somewhere/else")
    assert mirrors_for("custom", "/my/data") == ["/my/data"]
    assert mirrors_for("mnist", None)[0] == "/somewhere/else" and len(mirrors_for("mnist", None)) == 3


def saved(path, tensors: dict) -> Path:
    from vaepipe.atomic import write_tensors
    write_tensors(path, tensors)
    return path


def test_tensor_files_read_without_torch_as_torch_reads_them(tmp_path):
    """Every dtype the project saves, views at an offset, transposed, empty and 0-d."""
    base = torch.arange(60, dtype=torch.float64).reshape(6, 10)
    tensors = {"float32": torch.randn(7, 5), "int64": torch.arange(9), "uint8": torch.arange(200, dtype=torch.uint8),
               "bool": torch.tensor([True, False, True]), "int32 strided": torch.arange(9, dtype=torch.int32)[1::3],
               "rows": base[2:4, 3:7], "transposed": base.t(), "empty": torch.zeros(0, 4), "scalar": torch.tensor(2.5)}
    path = saved(tmp_path / "t.pt", tensors)
    expected = torch.load(path, weights_only=True)
    got = read_tensors(path, "train")
    assert list(got) == list(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.numpy().dtype and got[name].shape == tuple(tensor.shape), name
        assert np.array_equal(got[name], tensor.numpy()), name
    split = saved(tmp_path / "split.pt", {"images": torch.rand(30, 784), "labels": torch.arange(30)})
    assert np.array_equal(read_tensors(split, "normalize")["images"], load_split(split)[0].numpy())


def test_arrays_written_without_torch_are_what_torch_loads(tmp_path):
    """Every storage type, 0-d, empty, non-contiguous and big-endian arrays; each storage
    64-byte aligned, as torch.save aligns it; the same arrays give the same bytes."""
    arrays = {f"{name} {code}": np.arange(24).reshape(4, 6).astype(code) for name, code in STORAGE_TYPES.items()}
    arrays |= {"scalar": np.array(2.5), "empty": np.zeros((0, 4), np.float32),
               "transposed": np.arange(12.0).reshape(3, 4).T, "big-endian": np.arange(5, dtype=">f4"),
               "images": np.random.default_rng(0).random((5, 784), np.float32)}
    write_arrays(tmp_path / "a.pt", arrays)
    write_arrays(tmp_path / "b.pt", arrays)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    for loaded in (torch.load(tmp_path / "a.pt", weights_only=True),
                   torch.load(tmp_path / "a.pt", weights_only=True, mmap=True)):
        assert list(loaded) == list(arrays)
        for name, array in arrays.items():
            assert loaded[name].numpy().dtype == array.dtype.newbyteorder("<"), name  # as the archive says
            assert np.array_equal(loaded[name].numpy(), array), name
            assert loaded[name].numel() == 0 or loaded[name].data_ptr() % 64 == 0, name
    got = read_tensors(tmp_path / "a.pt", "normalize")
    assert all(np.array_equal(got[name], array) and got[name].shape == array.shape for name, array in arrays.items())


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_tensor_file_that_asks_for_code_is_refused_never_run(tmp_path):
    import pickle
    import zipfile

    path = saved(tmp_path / "t.pt", {"mu": torch.zeros(3)})
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    pkl = next(name for name in entries if name.endswith("/data.pkl"))
    entries[pkl] = pickle.dumps({"mu": RunsACommand(tmp_path / "ran")}, protocol=2)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.raises(UserError, match=r"t\.pt is not a tensor file this project wrote \(it asks for "
                                        r"(posix|os)\.system.*run `dvc repro train --force`"):
        read_tensors(path, "train")
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "storage too short", "compressed"])
def test_a_damaged_tensor_file_stops_in_one_line(tmp_path, damage):
    path = saved(tmp_path / "t.pt", {"mu": torch.arange(1000.0)})
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "not a zip":
        path.write_text("mu,logvar\n1,2\n")
    else:  # the storage's bytes cut, or the archive deflated (a small file could inflate to any size)
        import zipfile
        with zipfile.ZipFile(path) as archive:
            entries = {name: archive.read(name) for name in archive.namelist()}
        if damage == "storage too short":
            key = next(name for name in entries if name.endswith("/data/0"))
            entries[key] = entries[key][:400]
        compression = zipfile.ZIP_DEFLATED if damage == "compressed" else zipfile.ZIP_STORED
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, content in entries.items():
                archive.writestr(name, content)
    with pytest.raises(UserError) as error:
        read_tensors(path, "train")
    assert str(error.value).startswith(f"{path} is not a tensor file this project wrote (")
    assert "\n" not in str(error.value)
