"""Shared front half of every command: load a zoo model, import it, calibrate, quantize."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import data, frontend, models, quant
from .graph import Graph

CALIBRATION_IMAGES = 512
RANGE_METHOD = "percentile"
RANGE_PCT = 99.99


@dataclass
class Imported:
    name: str
    torch_model: object
    relax_mod: object
    graph: Graph
    input_size: int

    @property
    def input_channels(self) -> int:
        return self.graph.input_shape[0]

    @property
    def model_hash(self) -> str:
        return models.checkpoint_hash(self.name)


@lru_cache(maxsize=4)
def load(name: str, checkpoint: str | None = None) -> Imported:
    model, mod, graph = frontend.load_zoo(name, checkpoint)
    return Imported(name, model, mod, graph, models.info(name).input_shape[1])


@lru_cache(maxsize=4)
def calibration_stats(name: str, n_images: int = CALIBRATION_IMAGES,
                      checkpoint: str | None = None):
    """fp32 statistics of every tensor over the first n training-split images."""
    imp = load(name, checkpoint)
    cal = data.load("train").images(imp.input_size, 0, n_images, imp.input_channels)
    return quant.observe(imp.graph, cal)


def quantized(name: str, bits: int | dict = 8, method: str = RANGE_METHOD,
              pct: float = RANGE_PCT, checkpoint: str | None = None) -> quant.QGraph:
    imp = load(name, checkpoint)
    rng = quant.ranges(calibration_stats(name, CALIBRATION_IMAGES, checkpoint), method, pct)
    return quant.quantize_graph(imp.graph, rng, bits)


def progress(total: int, desc: str, enabled: bool = True):
    """A tqdm bar on stderr (disabled when not asked for)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False,
                dynamic_ncols=True)


def evaluate_int(qg: quant.QGraph, split: data.Split, size: int, limit: int | None = None,
                 batch: int = 100, bar=None) -> tuple[float, np.ndarray]:
    """Top-1 of the integer reference; returns (accuracy, predictions)."""
    preds = []
    for x, _ in split.batches(size, batch, limit):
        preds.append(quant.run_int(qg, quant.quantize_input(x)).argmax(1))
        if bar is not None:
            bar.update(len(x))
    p = np.concatenate(preds)
    return float((p == split.labels[:len(p)]).mean()), p
