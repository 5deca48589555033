"""Calibration observers: fp32 statistics per feature map of the layer graph."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..graph import Graph, run_float


@dataclass
class TensorStats:
    """Running statistics of one tensor: min/max, a fixed reservoir of samples (percentiles),
    and a histogram over the observed min/max range."""
    lo: float = np.inf
    hi: float = -np.inf
    samples: list = field(default_factory=list)
    count: int = 0
    sum: float = 0.0
    sumsq: float = 0.0

    def update(self, x: np.ndarray, rng: np.random.Generator, keep: int) -> None:
        flat = x.reshape(-1)
        self.lo = min(self.lo, float(flat.min()))
        self.hi = max(self.hi, float(flat.max()))
        self.count += flat.size
        self.sum += float(flat.sum(dtype=np.float64))
        self.sumsq += float(np.square(flat, dtype=np.float64).sum())
        take = min(keep, flat.size)
        self.samples.append(flat[rng.choice(flat.size, take, replace=False)])

    def sample(self) -> np.ndarray:
        return np.concatenate(self.samples) if self.samples else np.zeros(1, np.float32)

    def percentile_range(self, pct: float) -> tuple[float, float]:
        s = self.sample()
        return float(np.percentile(s, 100.0 - pct)), float(np.percentile(s, pct))

    @property
    def mean(self) -> float:
        return self.sum / max(self.count, 1)

    @property
    def std(self) -> float:
        return float(np.sqrt(max(self.sumsq / max(self.count, 1) - self.mean ** 2, 0.0)))

    def histogram(self, bins: int = 256) -> tuple[np.ndarray, np.ndarray]:
        return np.histogram(self.sample(), bins=bins, range=(self.lo, max(self.hi, self.lo + 1e-8)))


# float tensors of one calibration batch held at once (a batch is cut to fit)
MAX_BATCH_BYTES = 512 << 20


def images_per_batch(graph: Graph, batch: int, max_bytes: int) -> int:
    """`batch`, cut so that every float tensor of the graph for one batch fits max_bytes."""
    per_image = 4 * sum(int(np.prod(s)) for s in graph.shapes.values())
    return max(1, min(batch, max_bytes // max(per_image, 1)))


def observe(graph: Graph, images: np.ndarray, batch: int = 64, per_batch_samples: int = 4096,
            seed: int = 0, progress=None,
            max_batch_bytes: int = MAX_BATCH_BYTES) -> dict[str, TensorStats]:
    """Run the float graph over N×C×H×W calibration images, collecting stats per tensor.
    Large graphs run in smaller batches (max_batch_bytes of tensors at once); each batch
    adds per_batch_samples samples per tensor whatever its size."""
    rng = np.random.default_rng(seed)
    stats = {t: TensorStats() for t in graph.shapes}
    batch = images_per_batch(graph, batch, max_batch_bytes)
    for s in range(0, len(images), batch):
        env = run_float(graph, images[s:s + batch], keep=True)
        for t, v in env.items():
            stats[t].update(v, rng, per_batch_samples)
        if progress is not None:
            progress(min(batch, len(images) - s))
    return stats


def ranges(stats: dict[str, TensorStats], method: str = "percentile",
           pct: float = 99.99, k: float = 6.0) -> dict[str, tuple[float, float]]:
    """Quantization range per tensor: 'minmax', 'percentile' (pct), or 'meanstd' (μ ± kσ),
    always clipped to the observed min/max."""
    out = {}
    for t, st in stats.items():
        if method == "minmax":
            lo, hi = st.lo, st.hi
        elif method == "percentile":
            lo, hi = st.percentile_range(pct)
        elif method == "meanstd":
            lo, hi = st.mean - k * st.std, st.mean + k * st.std
        else:
            raise ValueError(f"unknown range method {method!r}: minmax, percentile or meanstd")
        out[t] = (max(lo, st.lo), min(hi, st.hi))
    return out
