"""A user's own calibration and evaluation images: an ``.npz`` or an image folder.

- ``.npz``: ``images`` and ``labels`` (or ``x`` and ``y``); optional per-split arrays
  ``train_images``/``train_labels``, ``val_…``, ``test_…`` keep calibration and evaluation
  apart. Images are N×H×W (grey), N×H×W×C or N×C×H×W, uint8 pixels or floats in [0, 1].
- folder: ``ROOT/<class>/<image>`` (the class index is the sorted sub-folder order), or
  ``ROOT/train/<class>/…`` and ``ROOT/test/<class>/…`` (and optionally ``val/``).

A split missing from the data falls back to all of it: the same images then serve
calibration and evaluation (post-training quantization uses no labels to calibrate).
Images stay raw pixels in [0, 1]: that is what the device receives. A model that expects
normalised inputs does the normalisation in its ``forward`` (``(x - mean) / std``): the import
folds it into the first layer.
Folder images are decoded batch by batch when asked for, never all at once.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm")
SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """User data that cannot be read (names the file and what to change)."""


class DataShapeError(ValueError):
    """Images that do not fit the model's input (channels or size)."""


def hw_of(size) -> tuple[int, int]:
    """(H, W) of a square size or a (C, H, W) / (H, W) shape."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    return int(size[-2]), int(size[-1])


def prepare(x: np.ndarray, size, resize: bool, what: str) -> np.ndarray:
    """Images in any of the accepted layouts → float32 N×C×H×W in [0, 1] fitting `size`
    (H, or the model's (C, H, W))."""
    c_model = None if isinstance(size, (int, np.integer)) or len(size) < 3 else int(size[0])
    x = _to_nchw(x, c_model)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    else:
        x = x.astype(np.float32)
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            raise DataError(f"{what}: pixel values span [{x.min():.3g}, {x.max():.3g}]; the "
                            "device input is pixels in [0, 1]: store raw pixels (uint8, or "
                            "floats in [0, 1]) and normalise in the model's forward "
                            "((x - mean) / std is folded into its first layer)")
    if c_model is not None and x.shape[1] != c_model:
        raise DataShapeError(f"{what}: images have {x.shape[1]} channel(s) but the model takes "
                             f"{c_model}")
    hw = hw_of(size)
    if tuple(x.shape[2:]) != hw:
        if not resize:
            raise DataShapeError(f"{what}: images are {x.shape[2]}×{x.shape[3]} but the model "
                                 f"takes {hw[0]}×{hw[1]}; pass --data-resize to scale them")
        import torch
        import torch.nn.functional as F
        t = torch.from_numpy(x)
        down = hw[0] < x.shape[2] or hw[1] < x.shape[3]
        x = F.interpolate(t, size=hw, mode="bilinear", align_corners=False,
                          antialias=down).clamp_(0.0, 1.0).numpy()
    return np.ascontiguousarray(x)


def _to_nchw(x: np.ndarray, c_model: int | None) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DataShapeError(f"images of shape {x.shape}: N×H×W, N×H×W×C or N×C×H×W expected")
    chans = (1, 3, 4) if c_model is None else (c_model,)
    if x.shape[1] in chans and x.shape[3] not in chans:
        return x
    if x.shape[3] in chans or x.shape[3] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    return x


@dataclass
class ArraySplit:
    """Images held in memory (an .npz)."""
    raw: np.ndarray
    labels: np.ndarray
    resize: bool
    what: str

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, size, start: int = 0, stop: int | None = None) -> np.ndarray:
        return prepare(self.raw[start:stop], size, self.resize, self.what)

    def batches(self, size, batch: int = 256, limit: int | None = None):
        n = len(self) if limit is None else min(limit, len(self))
        for s in range(0, n, batch):
            e = min(n, s + batch)
            yield self.images(size, s, e), self.labels[s:e]


@dataclass
class FolderSplit(ArraySplit):
    """Image files decoded when asked for (`raw` holds their paths)."""

    def images(self, size, start: int = 0, stop: int | None = None) -> np.ndarray:
        from PIL import Image
        c_model = None if isinstance(size, (int, np.integer)) or len(size) < 3 else size[0]
        mode = {1: "L", 3: "RGB"}.get(c_model, "RGB")
        hw = hw_of(size)
        out = []
        for path in self.raw[start:stop]:
            try:
                with Image.open(path) as im:
                    im = im.convert(mode)
                    if (im.height, im.width) != hw and self.resize:
                        im = im.resize((hw[1], hw[0]), Image.BILINEAR)
                    out.append(np.asarray(im, np.uint8))
            except OSError as e:
                raise DataError(f"{path}: not a readable image ({e})") from e
        sizes = {a.shape[:2] for a in out}
        if len(sizes) > 1:
            raise DataShapeError(f"{self.what}: images of different sizes "
                                 f"{sorted(sizes)[:3]}; pass --data-resize")
        x = np.stack(out) if out else np.zeros((0, *hw), np.uint8)
        return prepare(x, size, self.resize, self.what)


def user_split(path: str, kind: str, resize: bool = False) -> ArraySplit:
    if kind not in SPLITS:
        raise ValueError(f"unknown split {kind!r}: use 'train', 'val' or 'test'")
    if not os.path.exists(path):
        raise DataError(f"data {path} does not exist (give an .npz of images and labels or a "
                        "folder with one sub-folder of images per class)")
    if os.path.isdir(path):
        files, labels, where = _folder(os.path.abspath(path), kind)
        return FolderSplit(np.array(files, dtype=object), labels, resize, where)
    if not path.endswith(".npz"):
        raise DataError(f"data {path}: an .npz of images and labels or an image folder expected")
    images, labels, where = _npz(os.path.abspath(path), os.path.getmtime(path), kind)
    return ArraySplit(images, labels, resize, where)


@lru_cache(maxsize=6)
def _npz(path: str, _mtime: float, kind: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"data {path}: not a readable .npz ({e})") from e
    # this split's own arrays, else the whole set, else another split's
    order = [kind] + [k for k in SPLITS if k != kind]
    keys = [(f"{kind}_images", f"{kind}_labels"), ("images", "labels"), ("x", "y")] + \
        [(f"{k}_images", f"{k}_labels") for k in order[1:]]
    found = [(i, l) for i, l in keys if i in arrays and l in arrays]
    if not found:
        raise DataError(f"data {path} has arrays {sorted(arrays)}; it needs 'images' and "
                        f"'labels' (or 'x' and 'y', or '{kind}_images' and '{kind}_labels')")
    img_key, lbl_key = found[0]
    images, labels = arrays[img_key], arrays[lbl_key].reshape(-1)
    if len(images) != len(labels) or len(images) == 0:
        raise DataError(f"data {path}: {len(images)} images but {len(labels)} labels")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"data {path}: labels must be integer class indices, got "
                        f"{labels.dtype}")
    return images, labels.astype(np.int64), f"data {os.path.basename(path)}[{img_key}]"


def _folder(root: str, kind: str):
    subs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if "train" in subs and "test" in subs:
        part = kind if kind in subs else "train"
        return _class_folder(os.path.join(root, part))
    return _class_folder(root)


def _class_folder(root: str):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    files, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, c))):
            if f.lower().endswith(IMAGE_SUFFIXES):
                files.append(os.path.join(root, c, f))
                labels.append(i)
    if not files:
        raise DataError(f"data folder {root} holds no images in class sub-folders "
                        f"(ROOT/<class>/<image>{'/'.join(IMAGE_SUFFIXES[:3])})")
    return files, np.array(labels, np.int64), f"data folder {root}"
