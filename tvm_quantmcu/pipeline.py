"""Shared front half of every command: resolve the model (a zoo name, a torch.export program
or ``FILE.py:factory``), import it, calibrate on its data, quantize."""
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
    input_size: int                  # H of the input (square zoo models: the resolution)
    ref: models.ModelRef | None = None

    @property
    def input_channels(self) -> int:
        return self.graph.input_shape[0]

    @property
    def model_hash(self) -> str:
        return self.ref.digest if self.ref is not None else models.checkpoint_hash(self.name)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.graph.input_shape)


def resolve(model, checkpoint: str | None = None, input_shape=None) -> models.ModelRef:
    """The one resolver every command uses: zoo name, FILE.pt2 or FILE.py:factory (or an
    Imported / ModelRef, returned as its ModelRef)."""
    if isinstance(model, Imported) and model.ref is not None:
        return model.ref
    return models.resolve(model, checkpoint, input_shape)


def load(model, checkpoint: str | None = None, input_shape=None) -> Imported:
    """Import a model (see :func:`resolve`); cached per model identity."""
    if isinstance(model, Imported):
        return model
    return _load(resolve(model, checkpoint, input_shape))


@lru_cache(maxsize=4)
def _load(ref: models.ModelRef) -> Imported:
    torch_model = ref.build()
    mod, graph = frontend.import_model(torch_model, ref.input_shape)
    return Imported(ref.name, torch_model, mod, graph, ref.input_shape[1], ref)


def calibration_stats(model, n_images: int = CALIBRATION_IMAGES, checkpoint: str | None = None,
                      data_source: data.DataSource | None = None):
    """fp32 statistics of every tensor over the first n calibration ('train') images."""
    return _calibration_stats(resolve(model, checkpoint), n_images, data.source(data_source))


@lru_cache(maxsize=4)
def _calibration_stats(ref: models.ModelRef, n_images: int, src: data.DataSource):
    imp = _load(ref)
    return quant.observe(imp.graph, src.split("train").images(imp.input_shape, 0, n_images))


def quantized(model, bits: int | dict = 8, method: str = RANGE_METHOD,
              pct: float = RANGE_PCT, checkpoint: str | None = None,
              data_source: data.DataSource | None = None) -> quant.QGraph:
    imp = load(model, checkpoint)
    stats = calibration_stats(imp, CALIBRATION_IMAGES, data_source=data_source)
    return quant.quantize_graph(imp.graph, quant.ranges(stats, method, pct), bits)


def progress(total: int, desc: str, enabled: bool = True):
    """A tqdm bar on stderr (disabled when not asked for)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False,
                dynamic_ncols=True)


def evaluate_int(qg: quant.QGraph, split: data.Split, size, limit: int | None = None,
                 batch: int = 100, bar=None) -> tuple[float, np.ndarray]:
    """Top-1 of the integer reference; returns (accuracy, predictions)."""
    preds = []
    for x, _ in split.batches(size, batch, limit):
        preds.append(quant.run_int(qg, quant.quantize_input(x)).argmax(1))
        if bar is not None:
            bar.update(len(x))
    p = np.concatenate(preds)
    return float((p == split.labels[:len(p)]).mean()), p
