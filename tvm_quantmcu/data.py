"""Calibration and evaluation images: Fashion-MNIST (the default) or the user's own data.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` (no network); its
train/validation split is fixed and seeded. A user's data (:class:`DataSource`) is an ``.npz``
of images and labels or an image folder with one sub-folder per class (see
:mod:`tvm_quantmcu.userdata`). Every split returns float32 N×C×H×W images in [0, 1] — the
pixels the device receives — at the model's input resolution.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .userdata import DataShapeError, hw_of, user_split  # noqa: F401  (DataShapeError: API)

DATA_DIR_ENV = "QUANTMCU_FMNIST_DIR"
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
APT_PACKAGE = "dataset-fashion-mnist"
SPLIT_SEED = 20240125
N_VALIDATION = 5000

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DatasetMissingError(FileNotFoundError):
    """The Fashion-MNIST files are not installed."""


class DatasetCorruptError(ValueError):
    """An IDX file does not parse."""


def data_dir() -> str:
    return os.environ.get(DATA_DIR_ENV, DEFAULT_DIR)


def parse_idx(raw: bytes, path: str = "<bytes>") -> np.ndarray:
    """Parse an IDX file (big-endian header; uint8 payload)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetCorruptError(f"{path}: not an IDX file (bad magic)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DatasetCorruptError(f"{path}: IDX element type 0x{dtype_code:02x} is not uint8")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetCorruptError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    count = int(np.prod(dims)) if dims else 0
    if len(raw) - header != count:
        raise DatasetCorruptError(
            f"{path}: IDX payload has {len(raw) - header} bytes, header says {count}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read(name: str) -> np.ndarray:
    path = os.path.join(data_dir(), name)
    if not os.path.exists(path):
        raise DatasetMissingError(
            f"Fashion-MNIST file {path} is missing: install it with "
            f"`apt-get install -y --no-install-recommends {APT_PACKAGE}` "
            f"(or point ${DATA_DIR_ENV} at a folder holding the four IDX .gz files)")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetCorruptError(f"{path}: cannot decompress ({e})") from e
    return parse_idx(raw, path)


@lru_cache(maxsize=2)
def raw_split(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N×28×28, labels int64 N) of the 'train' or 'test' files."""
    img_name, lbl_name = _FILES[kind]
    images, labels = _read(img_name), _read(lbl_name)
    if images.shape[0] != labels.shape[0]:
        raise DatasetCorruptError(f"{kind}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels.astype(np.int64)


def split_indices() -> tuple[np.ndarray, np.ndarray]:
    """Fixed seeded permutation of the 60,000 training images → (train 55,000, val 5,000)."""
    n = raw_split("train")[0].shape[0]
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(perm[N_VALIDATION:]), np.sort(perm[:N_VALIDATION])


def resize(images_u8: np.ndarray, size, channels: int = 1) -> np.ndarray:
    """uint8 N×28×28 → float32 N×channels×H×W in [0,1] (bilinear, align_corners=False;
    the grey image in every channel). size: H (square), or the model's (C, H, W), whose C
    then gives the channels."""
    import torch
    import torch.nn.functional as F

    if not isinstance(size, (int, np.integer)) and len(size) == 3:
        channels = int(size[0])
    hw = hw_of(size)
    x = torch.from_numpy(np.array(images_u8, copy=True)).float().div_(255.0).unsqueeze(1)
    if hw != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
    if channels != 1:
        x = x.expand(-1, channels, -1, -1).contiguous()
    return x.numpy()


@dataclass
class Split:
    images_u8: np.ndarray  # N×28×28
    labels: np.ndarray     # N

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, size, start: int = 0, stop: int | None = None,
               channels: int = 1) -> np.ndarray:
        return resize(self.images_u8[start:stop], size, channels)

    def batches(self, size, batch: int = 256, limit: int | None = None):
        n = len(self) if limit is None else min(limit, len(self))
        for s in range(0, n, batch):
            e = min(n, s + batch)
            yield self.images(size, s, e), self.labels[s:e]


def load(split: str) -> Split:
    """'train' (55,000), 'val' (5,000) or 'test' (10,000)."""
    if split == "test":
        return Split(*raw_split("test"))
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}: use 'train', 'val' or 'test'")
    images, labels = raw_split("train")
    tr, va = split_indices()
    idx = tr if split == "train" else va
    return Split(images[idx], labels[idx])


@dataclass(frozen=True)
class DataSource:
    """Where calibration and evaluation images come from: Fashion-MNIST (path None), an
    ``.npz`` or an image folder; resize: scale the user's images to the model's input
    (bilinear) instead of refusing a size that differs."""
    path: str | None = None
    resize: bool = False

    @property
    def name(self) -> str:
        return "fashion-mnist" if self.path is None else self.path

    def split(self, kind: str):
        """'train' (calibration), 'val' (automatic λ) or 'test' (evaluation)."""
        if self.path is None:
            return load(kind)
        return user_split(self.path, kind, self.resize)

    def check(self, input_shape) -> None:
        """Fail early (one line) when the images cannot feed a model of this input shape."""
        self.split("test").images(tuple(input_shape), 0, 1)


FASHION_MNIST = DataSource()


def source(data: "DataSource | str | None" = None, resize: bool = False) -> DataSource:
    """A DataSource from a path (None: Fashion-MNIST)."""
    if isinstance(data, DataSource):
        return data
    return DataSource(data, resize) if data else FASHION_MNIST
