"""Datasets, offline first.

``load(name, train, root)`` returns a ``Split``: ``pixels`` as stored (uint8,
N x C x H x W), ``labels`` (int64) and ``images``, the pixels as float32 in
[0, 1], converted on first use (0.2 s for MNIST's training set at one thread);
``Split.batches`` converts batch by batch instead, for the fastest first batch.  Files are looked for
under the offline root (``--data-dir``, else ``$REPRO_DATA``, else
``~/.cache/repro-hub/data``) in the layouts people already have
(torchvision's ``<root>/MNIST/raw/``, a plain ``<root>/mnist/``, Debian's
``/usr/share/datasets/fashion-mnist``), gzipped or not, and every file is
checked against the publisher's md5: of the .gz as torchvision has it, or of
the decompressed content (Debian recompressed Fashion-MNIST, so its .gz md5s
differ while the content is identical).  Nothing is downloaded unless asked
(``--download``), never at import time, and one dataset is never silently
replaced by another.  A missing dataset raises one error that lists every
place looked and how to provide the files.

A file is hashed once: after it verifies, its decompressed content and the
source's size and modification time are cached under ``$REPRO_CACHE`` (default
``~/.cache/repro-hub``)``/verified/``, and later loads read the cache without
hashing or decompressing again while the source's size and mtime (and the cached
copy's) are unchanged.  Anything else (a changed, touched or new file; another
expected checksum) verifies again.  An unwritable cache only costs the speed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from registry import ReproError


class DatasetNotFound(ReproError):
    pass


class ChecksumError(ReproError):
    pass


@dataclass
class Split:
    pixels: torch.Tensor  # uint8, N x C x H x W, as stored
    labels: torch.Tensor  # int64, N
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def images(self) -> torch.Tensor:
        """float32 in [0, 1], N x C x H x W (converted once, on first use)."""
        return to_float(self.pixels)

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None, drop_last: bool = False,
                device=None):
        """(images, labels) mini-batches equal, bit for bit, to what
        ``common.train.batches(self.images, self.labels, ...)`` yields with the same
        generator, but converted batch by batch (no float copy of the whole set)."""
        from common.train import batches

        for x, y in batches(self.pixels, self.labels, batch_size=batch_size, shuffle=shuffle,
                            generator=generator, drop_last=drop_last, device=device):
            yield to_float(x), y


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as float32 in [0, 1] (x / 255, correctly rounded)."""
    return pixels.float().div_(255)


def default_root(root: str | os.PathLike | None = None) -> Path:
    if root:
        return Path(root).expanduser()
    if os.environ.get("REPRO_DATA"):
        return Path(os.environ["REPRO_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "repro-hub" / "data"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ------------------------------------------------------------- IDX (MNIST)

# name -> (gz md5 as torchvision/publisher, md5 of the decompressed file).
# The decompressed md5s were computed from files whose .gz md5 matches the
# publisher's (MNIST), or whose content the Debian package ships unchanged
# (Fashion-MNIST; see shared/data/README.md).
_MNIST_FILES = {
    "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
}
_FASHION_FILES = {
    "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


def parse_idx(raw, where: str = "") -> np.ndarray:
    """Decode an IDX file (LeCun's format: magic, dims, big-endian payload) held in
    ``bytes`` or a uint8 array (whose memory the result then shares)."""
    head = bytes(raw[:4])
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise ReproError(f"{where}: not an IDX file (bad magic)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if head[2] not in dtypes:
        raise ReproError(f"{where}: unknown IDX type code {head[2]:#x}")
    ndim = head[3]
    dims = bytes(raw[4:4 + 4 * ndim])
    shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[head[2]])
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ReproError(f"{where}: IDX file is {len(raw)} bytes, its header says {expected}")
    if isinstance(raw, np.ndarray):  # a view: no copy, writable if the buffer is
        arr = raw[offset:].view(dtype).reshape(shape)
    else:
        arr = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)
    # multi-byte types are converted to native order (a copy)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def _cache_dir() -> Path:
    base = os.environ.get("REPRO_CACHE") or Path(os.environ.get("XDG_CACHE_HOME")
                                                 or Path.home() / ".cache") / "repro-hub"
    return Path(base) / "verified"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _read_into(path: Path) -> np.ndarray:
    """The file's bytes in one read, into a writable, uninitialised buffer (tensors share it)."""
    buf = np.empty(path.stat().st_size, dtype=np.uint8)
    with open(path, "rb") as f:
        if f.readinto(buf) != len(buf):
            raise ReproError(f"{path} changed while being read")
    return buf


def _cache_entry(path: Path) -> Path:
    return _cache_dir() / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24] + ".json")


def _cached(path: Path, content_md5: str | None) -> np.ndarray | None:
    """The verified content of ``path`` if the cache vouches for it, else None."""
    try:
        entry = json.loads(_cache_entry(path).read_text())
        if (entry["source"] != str(path.resolve()) or entry["stamp"] != _stamp(path)
                or entry["md5"] != content_md5):
            return None
        if entry["content"] is None:  # the source itself is the verified content
            return _read_into(path)
        copy = _cache_dir() / entry["content"]
        return _read_into(copy) if entry["content_stamp"] == _stamp(copy) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remember(path: Path, content_md5: str | None, content: bytes) -> None:
    """Cache that ``path`` verified (and its decompressed content, if it is gzipped)."""
    if content_md5 is None:  # nothing was checked: nothing to vouch for
        return
    entry_path = _cache_entry(path)
    entry = {"source": str(path.resolve()), "stamp": _stamp(path), "md5": content_md5,
             "content": None, "content_stamp": None}
    try:
        entry_path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".gz":
            copy = entry_path.with_suffix(".idx")
            tmp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, copy)
            entry["content"], entry["content_stamp"] = copy.name, _stamp(copy)
        tmp = entry_path.with_name(f".{entry_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, entry_path)
    except OSError:  # a read-only home: verify every time
        pass


def _read_verified(candidates: list[Path], sums: tuple[str, str] | None) -> bytes | np.ndarray | None:
    """The first candidate file whose content verifies; None if none exists.
    A file that exists but fails its checksum is an error, not skipped."""
    for path in candidates:
        if not path.is_file():
            continue
        content_md5 = sums[1] if sums else None
        hit = _cached(path, content_md5)
        if hit is not None:
            return hit
        raw = path.read_bytes()
        if path.suffix == ".gz":
            if sums and md5(raw) == sums[0]:
                raw = gzip.decompress(raw)
                _remember(path, content_md5, raw)
                return np.frombuffer(raw, np.uint8).copy()  # writable
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError) as exc:
                raise ChecksumError(f"{path} is not a readable gzip file ({exc})") from None
        if sums is None or md5(raw) == sums[1]:
            _remember(path, content_md5, raw)
            return np.frombuffer(raw, np.uint8).copy()
        raise ChecksumError(f"{path} fails its checksum (content md5 {md5(raw)}, expected "
                            f"{sums[1]}): a corrupt or different file; replace it")
    return None


def _idx_dataset(name: str, folders: list[Path], files: dict, train: bool, classes,
                 how_to: str) -> Split:
    prefix = "train" if train else "t10k"
    arrays = {}
    for kind in ("images", "labels"):
        stem = next(s for s in files if s.startswith(f"{prefix}-{kind}"))
        candidates = [f / n for f in folders for n in (stem, stem + ".gz", stem.replace("-idx", ".idx"))]
        raw = _read_verified(candidates, files[stem])
        if raw is None:
            looked = "\n  ".join(str(f) for f in folders)
            raise DatasetNotFound(f"{name}: {stem}[.gz] not found. Looked in:\n  {looked}\n{how_to}")
        arrays[kind] = parse_idx(raw, stem)
    pixels = torch.from_numpy(arrays["images"]).unsqueeze(1)  # shares the read buffer
    labels = torch.from_numpy(arrays["labels"].astype(np.int64))
    if len(pixels) != len(labels):
        raise ReproError(f"{name}: {len(pixels)} images but {len(labels)} labels")
    return Split(pixels, labels, tuple(classes))


def _download_torchvision(cls_name: str, root: Path) -> None:
    import torchvision

    try:
        getattr(torchvision.datasets, cls_name)(str(root), download=True)
    except Exception as exc:  # no network, server down, ...
        raise DatasetNotFound(f"download of {cls_name} into {root} failed: {exc}") from None


def mnist(train: bool = True, root=None, download: bool = False) -> Split:
    root = default_root(root)
    folders = [root / "MNIST" / "raw", root / "mnist", root]
    how_to = (f"Provide the four original IDX files (gzipped or not), e.g.\n"
              f"  mkdir -p {root}/mnist && cp train-images-idx3-ubyte.gz ... {root}/mnist/\n"
              f"or point --data-dir / $REPRO_DATA at a folder holding them "
              f"(this project's ../shared/data works), or pass --download.")
    if download and not any((f / "train-images-idx3-ubyte.gz").exists() for f in folders):
        _download_torchvision("MNIST", root)
    return _idx_dataset("MNIST", folders, _MNIST_FILES, train, [str(i) for i in range(10)], how_to)


def fashion_mnist(train: bool = True, root=None, download: bool = False) -> Split:
    root = default_root(root)
    folders = [root / "FashionMNIST" / "raw", root / "fashion-mnist", root / "fashion_mnist",
               Path("/usr/share/datasets/fashion-mnist")]
    how_to = ("Install the Debian package (apt-get install dataset-fashion-mnist), or copy the "
              f"four IDX files into {root}/fashion-mnist/, or pass --download.")
    if download and not any((f / "train-images-idx3-ubyte.gz").exists() for f in folders):
        _download_torchvision("FashionMNIST", root)
    return _idx_dataset("Fashion-MNIST", folders, _FASHION_FILES, train, FASHION_CLASSES, how_to)


# ---------------------------------------------------------------- CIFAR-10

CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts, lists, numpy arrays) and nothing that runs code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def cifar10(train: bool = True, root=None, download: bool = False, checksums=CIFAR10_MD5) -> Split:
    """The python-pickle release (cifar-10-batches-py/), as torchvision unpacks it."""
    root = default_root(root)
    folder = root / "cifar-10-batches-py"
    if download and not folder.is_dir():
        _download_torchvision("CIFAR10", root)
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DatasetNotFound(
                f"CIFAR-10: {path} not found. Unpack cifar-10-python.tar.gz "
                f"(https://www.cs.toronto.edu/~kriz/cifar.html) into {root}, "
                f"point --data-dir / $REPRO_DATA at its parent, or pass --download.")
        raw = path.read_bytes()
        if checksums is not None and md5(raw) != checksums[name]:
            raise ChecksumError(f"{path} fails its md5 ({md5(raw)} != {checksums[name]})")
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch["labels"])
    x = torch.from_numpy(np.concatenate(images))
    return Split(x, torch.tensor(labels, dtype=torch.int64), CIFAR10_CLASSES)


# -------------------------------------------------------------------- SVHN

SVHN_MD5 = {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
            "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3"}


def svhn(train: bool = True, root=None, download: bool = False, checksums=SVHN_MD5) -> Split:
    """The cropped-digits .mat files; label 10 means digit 0 (as torchvision maps it)."""
    import scipy.io

    root = default_root(root)
    name = "train_32x32.mat" if train else "test_32x32.mat"
    candidates = [root / "svhn" / name, root / "SVHN" / name, root / name]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None and download:
        import torchvision

        try:
            torchvision.datasets.SVHN(str(root / "svhn"), split="train" if train else "test",
                                      download=True)
        except Exception as exc:
            raise DatasetNotFound(f"download of SVHN into {root / 'svhn'} failed: {exc}") from None
        path = root / "svhn" / name
    if path is None:
        looked = "\n  ".join(str(p) for p in candidates)
        raise DatasetNotFound(f"SVHN: {name} not found. Looked in:\n  {looked}\nDownload it from "
                              f"http://ufldl.stanford.edu/housenumbers/ into {root}/svhn/, "
                              f"or pass --download.")
    raw = path.read_bytes()
    if checksums is not None and md5(raw) != checksums[name]:
        raise ChecksumError(f"{path} fails its md5 ({md5(raw)} != {checksums[name]})")
    mat = scipy.io.loadmat(path)
    x = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1), dtype=np.uint8))
    y = torch.from_numpy(mat["y"].astype(np.int64).reshape(-1))
    y[y == 10] = 0
    return Split(x, y, tuple(str(i) for i in range(10)))


LOADERS = {"mnist": mnist, "fashion_mnist": fashion_mnist, "cifar10": cifar10, "svhn": svhn}


def load(name: str, train: bool = True, root=None, download: bool = False) -> Split:
    key = name.lower().replace("-", "_")
    if key not in LOADERS:
        raise ReproError(f"unknown dataset {name!r}: one of {', '.join(LOADERS)}")
    return LOADERS[key](train=train, root=root, download=download)
