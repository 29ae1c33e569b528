"""Datasets: checksums, offline layouts, real formats, one clear error when missing."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from common import data
from tests.conftest import fashion_available, mnist_available


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_parse_idx_round_trip_and_truncation():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(data.parse_idx(_idx_bytes(arr)), arr)
    with pytest.raises(Exception, match="header says"):
        data.parse_idx(_idx_bytes(arr)[:-1])


@pytest.mark.skipif(not mnist_available(), reason="MNIST files not provided (set REPRO_DATA)")
def test_mnist_offline_matches_published_counts():
    train, test = data.mnist(train=True), data.mnist(train=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and 0 <= train.images.min() and train.images.max() == 1
    # class counts from shared/data/README.md
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.bincount(train.labels).tolist()[:3] == [5923, 6742, 5958]


@pytest.mark.skipif(not fashion_available(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian_recompressed_files(tmp_path):
    # an empty root: the loader must fall back to the Debian package and accept its
    # recompressed .gz files by their decompressed checksum
    test = data.fashion_mnist(train=False, root=tmp_path)
    assert test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert test.classes[9] == "Ankle boot"


@pytest.mark.skipif(not mnist_available(), reason="MNIST files not provided")
def test_corrupt_file_is_rejected(tmp_path):
    import os
    from pathlib import Path

    src = Path(os.environ["REPRO_DATA"]) / "mnist"
    dst = tmp_path / "mnist"
    dst.mkdir()
    for f in src.glob("*.gz"):
        (dst / f.name).write_bytes(f.read_bytes())
    raw = bytearray(gzip.decompress((dst / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one label changed
    (dst / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(data.ChecksumError, match="t10k-labels"):
        data.mnist(train=False, root=tmp_path)


def test_missing_dataset_lists_where_it_looked(tmp_path):
    with pytest.raises(data.DatasetNotFound) as exc:
        data.mnist(train=True, root=tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and str(tmp_path / "mnist") in msg
    assert "--download" in msg and "REPRO_DATA" in msg


def test_root_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "env"))
    assert data.default_root(tmp_path / "flag") == tmp_path / "flag"
    assert data.default_root(None) == tmp_path / "env"
    monkeypatch.delenv("REPRO_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.default_root(None) == tmp_path / "cache" / "repro-hub" / "data"


def test_cifar10_real_format_small_files(tmp_path):
    """Batches written as the python release pickles them: uint8 rows of 3072 (R, G, B planes)."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        imgs = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(4)]
        batches[name] = (imgs, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": imgs, "labels": labels, "batch_label": name.encode()}, f)
    train = data.cifar10(train=True, root=tmp_path, checksums=None)
    test = data.cifar10(train=False, root=tmp_path, checksums=None)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    imgs, labels = batches["test_batch"]
    assert test.labels.tolist() == labels
    # pixel (row 5, col 7) of the green plane of image 2
    assert test.images[2, 1, 5, 7].item() == pytest.approx(imgs[2, 1024 + 5 * 32 + 7] / 255)
    with pytest.raises(data.ChecksumError):  # the real md5s are enforced by default
        data.cifar10(train=False, root=tmp_path)


def test_svhn_real_format_small_file(tmp_path):
    import scipy.io

    (tmp_path / "svhn").mkdir()
    x = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)
    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": x, "y": y})
    split = data.svhn(train=False, root=tmp_path, checksums=None)
    assert split.images.shape == (5, 3, 32, 32)
    assert split.labels.tolist() == [0, 1, 2, 0, 9]  # label 10 is the digit 0
    assert split.images[3, 2, 4, 6].item() == pytest.approx(x[4, 6, 2, 3] / 255)
    with pytest.raises(data.DatasetNotFound, match="train_32x32.mat"):
        data.svhn(train=True, root=tmp_path)


def test_unknown_dataset_is_not_substituted():
    with pytest.raises(Exception, match="unknown dataset 'cifar100'"):
        data.load("cifar100")


def _tiny_mnist(folder, n=5):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imgs = {"train": rng.integers(0, 256, (n, 28, 28)), "t10k": rng.integers(0, 256, (n, 28, 28))}
    files = {}
    for split, arr in imgs.items():
        for kind, a in (("images-idx3", arr), ("labels-idx1", np.arange(n) % 10)):
            raw = _idx_bytes(a)
            stem = f"{split}-{kind}-ubyte"
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
            files[stem] = ("not-the-gz-md5", data.md5(raw))  # verified by content
    return imgs, files


def test_a_verified_file_is_read_from_the_cache_until_it_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    imgs, files = _tiny_mnist(tmp_path / "mnist")
    load = lambda: data._idx_dataset("toy", [tmp_path / "mnist"], files, False, "0123456789", "")
    first = load()
    assert torch.equal(first.pixels[:, 0], torch.from_numpy(imgs["t10k"].astype(np.uint8)))
    assert len(list((tmp_path / "cache" / "verified").glob("*.json"))) == 2

    hashed = []
    real_md5 = data.md5
    monkeypatch.setattr(data, "md5", lambda b: hashed.append(len(b)) or real_md5(b))
    again = load()  # neither hashed nor decompressed again
    assert hashed == [] and torch.equal(again.pixels, first.pixels)

    src = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))  # touched
    load()
    assert len(hashed) >= 1  # verified again

    # a different file of the same size under the same name: caught by its mtime
    raw = bytearray(gzip.decompress(src.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10
    src.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(data.ChecksumError):
        load()

    # a cached copy edited behind the loader's back is not trusted either
    _tiny_mnist(tmp_path / "fresh")
    fresh = lambda: data._idx_dataset("toy", [tmp_path / "fresh"], files, False, "0123456789", "")
    fresh()
    for copy in (tmp_path / "cache" / "verified").glob("*.idx"):
        b = bytearray(copy.read_bytes())
        b[-1] ^= 1
        copy.write_bytes(bytes(b))
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 10**9))
    hashed.clear()
    assert torch.equal(fresh().pixels, first.pixels) and hashed  # re-verified from the source


def test_split_batches_equal_the_training_loops_batches():
    from common.train import batches

    g = torch.Generator().manual_seed(0)
    split = data.Split(torch.randint(0, 256, (103, 1, 4, 4), dtype=torch.uint8, generator=g),
                       torch.arange(103), tuple("0123456789"))
    assert split.images.dtype == torch.float32 and split.images.max() <= 1
    assert torch.equal(split.images * 255, split.pixels.float())
    for kw in ({}, {"shuffle": True}, {"shuffle": True, "drop_last": True}):
        ours = list(split.batches(10, generator=torch.Generator().manual_seed(5), **kw))
        loop = list(batches(split.images, split.labels, batch_size=10,
                            generator=torch.Generator().manual_seed(5), **kw))
        assert len(ours) == len(loop) == (10 if kw.get("drop_last") else 11)
        assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(ours, loop))
