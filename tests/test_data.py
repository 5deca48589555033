import gzip
import os
import struct

import numpy as np
import pytest

from tvm_quantmcu import data
from helpers import requires_dataset


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + \
        arr.astype(np.uint8).tobytes()


def test_parse_idx_round_trip():
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert (data.parse_idx(_idx(a)) == a).all()


@pytest.mark.parametrize("raw", [b"", b"\x01\x00\x08\x01", bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2])])
def test_parse_idx_rejects_bad_files(raw):
    with pytest.raises(data.DatasetCorruptError):
        data.parse_idx(raw, "x.gz")


def test_missing_dataset_names_the_apt_package(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    data.raw_split.cache_clear()
    try:
        with pytest.raises(data.DatasetMissingError, match="dataset-fashion-mnist"):
            data.load("test")
    finally:
        data.raw_split.cache_clear()


def test_small_dataset_dir(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for kind, n in (("train", 60), ("t10k", 10)):
        with gzip.open(tmp_path / f"{kind}-images-idx3-ubyte.gz", "wb") as f:
            f.write(_idx(rng.integers(0, 256, (n, 28, 28))))
        with gzip.open(tmp_path / f"{kind}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(_idx(rng.integers(0, 10, n)))
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(data, "N_VALIDATION", 6)
    data.raw_split.cache_clear()
    try:
        assert len(data.load("test")) == 10
        x = data.load("test").images(64)
        assert x.shape == (10, 1, 64, 64) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
    finally:
        data.raw_split.cache_clear()


@requires_dataset
def test_real_splits_are_fixed_and_disjoint():
    tr, va = data.split_indices()
    assert len(tr) == 55000 and len(va) == 5000
    assert not set(tr.tolist()) & set(va.tolist())
    tr2, va2 = data.split_indices()
    assert (tr == tr2).all() and (va == va2).all()
    te = data.load("test")
    assert len(te) == 10000 and set(np.unique(te.labels)) == set(range(10))


def test_unknown_split():
    with pytest.raises(ValueError, match="unknown split"):
        data.load("dev")


def test_resize_fills_every_channel_with_the_grey_image():
    imgs = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    grey = data.resize(imgs, 96)
    rgb = data.resize(imgs, 96, channels=3)
    assert grey.shape == (2, 1, 96, 96) and rgb.shape == (2, 3, 96, 96)
    assert all(np.array_equal(rgb[:, c], grey[:, 0]) for c in range(3))
