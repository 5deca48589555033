"""Patch-aware calibration: fp32 statistics of every patch-stage feature map per patch
position, the VDPC outlier threshold, and the ranges of the 8-bit and the low-bit branches."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..graph import Graph, run_float
from ..patch import PatchPlan
from ..quant import ActQuant
from ..quant.observers import images_per_batch

# float stage tensors of one calibration batch held at once (a batch is cut to fit)
MAX_BATCH_BYTES = 256 << 20
THRESHOLD_METHODS = ("percentile", "meanstd", "clip")
# above this share of calibration patches routed to the 8-bit branch VDPC has degenerated:
# the low-bit branch rarely runs and the policy's gain is mostly gone
OUTLIER_WARN_RATE = 0.5
RANGE_METHODS = ("mse", "percentile", "minmax")


@dataclass
class StageCalibration:
    """Float samples of every stage tensor, split by the VDPC class of their patch."""
    plan: PatchPlan
    classification_map: str
    threshold: float                       # T on |x| of the classification map
    outlier: np.ndarray                    # [image, patch] bool (calibration images)
    samples_all: dict[str, np.ndarray] = field(default_factory=dict)
    samples_normal: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def outlier_rate(self) -> float:
        return float(self.outlier.mean())

    def outlier_rate_per_patch(self) -> list[list[float]]:
        p, q = self.plan.grid
        return self.outlier.mean(axis=0).reshape(p, q).round(4).tolist()

    def routing(self) -> dict:
        """VDPC's routing on the calibration images: where it classifies, with which
        threshold, the share of patches sent to the 8-bit branch (overall and per patch
        position), and a warning when that share is above OUTLIER_WARN_RATE."""
        rate = self.outlier_rate
        res = {"classification_map": self.classification_map, "threshold": self.threshold,
               "calibration_images": int(self.outlier.shape[0]),
               "calibration_patches": int(self.outlier.size),
               "outlier_patch_rate": round(rate, 4),
               "outlier_patch_rate_per_position": self.outlier_rate_per_patch()}
        if rate > OUTLIER_WARN_RATE:
            res["warning"] = (
                f"VDPC sends {100 * rate:.1f}% of the calibration patches to the 8-bit branch "
                f"(classification map {self.classification_map}, |x| >= {self.threshold:.4g}): "
                "the low-bit branch rarely runs; classify on another feature map "
                "(--classification-map, e.g. one after a ReLU) or raise the threshold "
                "(--threshold-pct)")
        return res


def _patch_max(env: dict, plan: PatchPlan, tensor: str) -> np.ndarray:
    """max |x| of every (image, patch) region of a tensor: N × patches."""
    x = env[tensor]
    out = []
    for p in plan.all_patches():
        r = p.regions[tensor]
        out.append(np.abs(x[:, r.h0:r.h1, r.w0:r.w1, :]).reshape(len(x), -1).max(axis=1))
    return np.stack(out, axis=1)


def threshold_of(values: np.ndarray, method: str, pct: float, k: float, clip_hi: float) -> float:
    a = np.abs(values)
    if method == "percentile":
        return float(np.percentile(a, pct))
    if method == "meanstd":
        return float(a.mean() + k * a.std())
    if method == "clip":
        return float(clip_hi)
    raise ValueError(f"unknown threshold method {method!r}; one of {THRESHOLD_METHODS}")


def calibrate_stage(plan: PatchPlan, images: np.ndarray, threshold: str = "percentile",
                    threshold_pct: float = 99.99, threshold_k: float = 6.0,
                    classification_map: str | None = None, samples_per_tensor: int = 200_000,
                    batch: int = 64, seed: int = 0,
                    max_batch_bytes: int = MAX_BATCH_BYTES) -> StageCalibration:
    """Run the float patch stage over calibration images (N×C×H×W) and collect, per stage
    tensor, value samples of all patches and of the non-outlier patches.

    Streams: no stage tensor of all images is kept. A first pass over the images finds the
    threshold and the outlier patches (keeping only the classification map's values); a
    second pass takes each tensor's samples at positions drawn beforehand, uniformly over the
    concatenation of every (image batch, patch) region — the same samples as drawing from
    that concatenation held whole."""
    g = plan.graph
    cmap = classification_map or plan.first_feature_map
    stage_tensors = [l.output for l in plan.stage_layers]
    if cmap not in stage_tensors:
        raise ValueError(f"classification map {cmap!r} is not a patch-stage feature map "
                         f"({', '.join(stage_tensors)})")
    stage = Graph(g.input, g.input_shape, plan.stage_layers, plan.stage_output)
    batch = images_per_batch(stage, batch, max_batch_bytes)
    patches = plan.all_patches()
    rng = np.random.default_rng(seed)

    def stage_envs():
        for s in range(0, len(images), batch):
            yield s, run_float(stage, images[s:s + batch], keep=True)

    cmax, c_vals = [], []
    for _, env in stage_envs():
        cmax.append(_patch_max(env, plan, cmap))
        c_vals.append(env[cmap].reshape(-1))
        del env
    cmax = np.concatenate(cmax)
    c_all = np.concatenate(c_vals)
    del c_vals
    # the clipping bound of a 4-bit quantizer of the map (the "clip" option)
    clip_hi = float(np.percentile(np.abs(c_all), 99.9))
    T = threshold_of(c_all, threshold, threshold_pct, threshold_k, clip_hi)
    del c_all
    outlier = cmax >= T
    cal = StageCalibration(plan, cmap, T, outlier)
    starts = list(range(0, len(images), batch))
    # chunk c of tensor t: (batch, patch) in concatenation order; its length (all / normal)
    picks = {}
    for t in stage_tensors:
        size = [_region_size(p.regions[t], g.shapes[t]) for p in patches]
        n_all = [min(batch, len(images) - s) * sz for s in starts for sz in size]
        n_norm = [int((~outlier[s:s + batch, pi]).sum()) * sz
                  for s in starts for pi, sz in enumerate(size)]
        picks[t] = (_Picker(n_all, samples_per_tensor, rng),
                    _Picker(n_norm, samples_per_tensor, rng) if sum(n_norm) else None)
    for s, env in stage_envs():
        bi = starts.index(s)
        for t in stage_tensors:
            x = env[t]
            p_all, p_norm = picks[t]
            for pi, p in enumerate(patches):
                r = p.regions[t]
                c = bi * len(patches) + pi
                reg = x[:, r.h0:r.h1, r.w0:r.w1, :]
                p_all.take(c, reg)
                if p_norm is not None:
                    keep = ~outlier[s:s + len(x), pi]
                    if keep.any():
                        p_norm.take(c, reg[keep])
        del env
    for t in stage_tensors:
        p_all, p_norm = picks[t]
        cal.samples_all[t] = p_all.result()
        cal.samples_normal[t] = p_norm.result() if p_norm is not None else \
            _subsample(cal.samples_all[t], samples_per_tensor, rng)
    return cal


def _region_size(r, shape) -> int:
    return (r.h1 - r.h0) * (r.w1 - r.w0) * shape[0]


class _Picker:
    """Values at positions drawn (without replacement) over a virtual concatenation of
    chunks, filled in chunk by chunk: equal to ``_subsample(np.concatenate(chunks))``."""

    def __init__(self, chunk_sizes: list[int], n: int, rng):
        self.offsets = np.concatenate([[0], np.cumsum(chunk_sizes)]).astype(np.int64)
        total = int(self.offsets[-1])
        self.order = None
        if total > n:
            idx = rng.choice(total, n, replace=False)
            self.order = np.argsort(idx, kind="stable")
            self.sorted_idx = idx[self.order]
        self.values = np.empty(min(total, n), np.float32)

    def take(self, chunk: int, x: np.ndarray) -> None:
        lo, hi = self.offsets[chunk], self.offsets[chunk + 1]
        flat = x.reshape(-1)
        if self.order is None:
            self.values[lo:hi] = flat
            return
        a, b = np.searchsorted(self.sorted_idx, [lo, hi])
        self.values[a:b] = flat[self.sorted_idx[a:b] - lo]

    def result(self) -> np.ndarray:
        if self.order is None:
            return self.values
        out = np.empty_like(self.values)
        out[self.order] = self.values
        return out


def _subsample(v: np.ndarray, n: int, rng) -> np.ndarray:
    return v if v.size <= n else v[rng.choice(v.size, n, replace=False)]


def best_range(samples: np.ndarray, bits: int, method: str = "mse",
               pct: float = 99.9) -> tuple[float, float]:
    """Quantization range of a feature map at `bits`.

    mse: the clipping range (among percentiles 99–100) with the least quantization error on
    the samples; percentile: [100-pct, pct] percentiles; minmax: observed extremes."""
    lo_all, hi_all = float(samples.min()), float(samples.max())
    if method == "minmax":
        return lo_all, hi_all
    if method == "percentile":
        return float(np.percentile(samples, 100 - pct)), float(np.percentile(samples, pct))
    if method != "mse":
        raise ValueError(f"unknown range method {method!r}; one of {RANGE_METHODS}")
    best, best_err = (lo_all, hi_all), np.inf
    for p in (99.0, 99.5, 99.8, 99.9, 99.95, 99.99, 100.0):
        lo = float(np.percentile(samples, 100 - p)) if lo_all < 0 else 0.0
        hi = float(np.percentile(samples, p))
        q = ActQuant.from_range(lo, hi, bits)
        err = float(np.mean((q.dequantize(q.quantize(samples)) - samples) ** 2))
        if err < best_err:
            best, best_err = (lo, hi), err
    return best
