"""Patch-aware calibration: fp32 statistics of every patch-stage feature map per patch
position, the VDPC outlier threshold, and the ranges of the 8-bit and the low-bit branches."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..graph import run_float
from ..patch import PatchPlan
from ..quant import ActQuant

THRESHOLD_METHODS = ("percentile", "meanstd", "clip")
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
                    batch: int = 64, seed: int = 0) -> StageCalibration:
    """Run the float graph over calibration images (N×C×H×W) and collect, per stage tensor,
    value samples of all patches and of the non-outlier patches."""
    g = plan.graph
    cmap = classification_map or plan.first_feature_map
    stage_tensors = [l.output for l in plan.stage_layers]
    if cmap not in stage_tensors:
        raise ValueError(f"classification map {cmap!r} is not a patch-stage feature map "
                         f"({', '.join(stage_tensors)})")
    rng = np.random.default_rng(seed)
    envs, cmax = [], []
    for s in range(0, len(images), batch):
        env = run_float(g, images[s:s + batch], keep=True)
        envs.append({t: env[t] for t in stage_tensors})
        cmax.append(_patch_max(env, plan, cmap))
    cmax = np.concatenate(cmax)
    c_all = np.concatenate([e[cmap].reshape(-1) for e in envs])
    # the clipping bound of a 4-bit quantizer of the map (the "clip" option)
    clip_hi = float(np.percentile(np.abs(c_all), 99.9))
    T = threshold_of(c_all, threshold, threshold_pct, threshold_k, clip_hi)
    outlier = cmax >= T
    cal = StageCalibration(plan, cmap, T, outlier)
    for t in stage_tensors:
        all_vals, normal_vals = [], []
        start = 0
        for e in envs:
            x = e[t]
            n = len(x)
            for pi, p in enumerate(plan.all_patches()):
                r = p.regions[t]
                reg = x[:, r.h0:r.h1, r.w0:r.w1, :]
                all_vals.append(reg.reshape(-1))
                keep = ~outlier[start:start + n, pi]
                if keep.any():
                    normal_vals.append(reg[keep].reshape(-1))
            start += n
        cal.samples_all[t] = _subsample(np.concatenate(all_vals), samples_per_tensor, rng)
        cal.samples_normal[t] = _subsample(
            np.concatenate(normal_vals) if normal_vals else cal.samples_all[t],
            samples_per_tensor, rng)
    return cal


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
