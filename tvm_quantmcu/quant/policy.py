"""A quantization policy: the plan, the VDPC routing, and the bits and ranges of each branch.

Saved as versioned JSON. A policy is bound to one model (by checkpoint hash) and one patch
plan; loading it for anything else is refused. It lives with the integer semantics, below the
search that makes it and the passes and code generator that consume it.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from ..graph import Graph
from .qparams import ActQuant
from .reference import QGraph, quantize_graph

FORMAT_VERSION = 1
POLICIES = ("quantmcu", "int8", "layerwise-int8", "memory-driven", "rl")


class PolicyMismatchError(ValueError):
    """A policy file does not belong to this model or plan."""


def integer_thresholds(q: ActQuant, threshold: float) -> tuple[int, int]:
    """(hi, lo) of the integer VDPC check on an 8-bit map quantized by `q`: a patch is an
    outlier when some value is ≥ hi or ≤ lo, i.e. T or more away from the zero point, with
    T' = round(T / scale) ≥ 1. Inclusive, so a threshold at the top of the 8-bit range still
    catches saturated values; a threshold beyond the range means "saturated"; a map without a
    negative range (zero point 0) has no low-side check (lo = -1)."""
    t_mag = max(1, int(np.floor(threshold / q.scale + 0.5)))
    lo = q.zero_point - t_mag
    return min(q.zero_point + t_mag, q.qmax), (lo if lo >= 0 else (0 if q.zero_point > 0 else -1))


@dataclass
class Policy:
    name: str
    model: str
    model_hash: str
    split_index: int | None            # None: layer-by-layer (no patches)
    grid: tuple[int, int] | None
    ranges8: dict[str, tuple[float, float]]          # every tensor, the 8-bit branch
    vdpc: bool = False
    classification_map: str | None = None
    threshold: float | None = None                   # T on |x| of the classification map
    bits_low: dict[str, int] = field(default_factory=dict)   # tensors below 8 bits
    ranges_low: dict[str, tuple[float, float]] = field(default_factory=dict)
    w_bits: dict[str, int] = field(default_factory=dict)     # layers with weights below 8
    lam: float | None = None
    params: dict = field(default_factory=dict)       # reconstructed choices, for the report
    version: int = FORMAT_VERSION

    # ---- integer graphs of the two branches
    def qgraph8(self, graph: Graph) -> QGraph:
        return quantize_graph(graph, self.ranges8, 8, self.w_bits or 8)

    def qgraph_low(self, graph: Graph) -> QGraph:
        ranges = dict(self.ranges8)
        ranges.update(self.ranges_low)
        return quantize_graph(graph, ranges, self.bits_low or 8, self.w_bits or 8)

    def act_bits(self, tensor: str) -> int:
        return self.bits_low.get(tensor, 8)

    def check_branches(self, qg8: QGraph, qg_low: QGraph, stage_output: str) -> None:
        """Both branches of a VDPC policy must write the stage output alike."""
        if self.vdpc and qg_low.acts[stage_output] != qg8.acts[stage_output]:
            raise ValueError(f"VDPC policy {self.name}: the stage output {stage_output} must "
                             "have the same quantization in both branches")

    def thresholds_q(self, qg8: QGraph) -> tuple[int, int] | tuple[None, None]:
        """(hi, lo) integer VDPC thresholds on the classification map, (None, None) without
        VDPC."""
        if not self.vdpc:
            return None, None
        return integer_thresholds(qg8.acts[self.classification_map], self.threshold)

    # ---- persistence
    def to_json(self) -> dict:
        d = asdict(self)
        d["grid"] = list(self.grid) if self.grid else None
        d["ranges8"] = {k: list(v) for k, v in self.ranges8.items()}
        d["ranges_low"] = {k: list(v) for k, v in self.ranges_low.items()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Policy":
        if d.get("version") != FORMAT_VERSION:
            raise PolicyMismatchError(f"policy format version {d.get('version')} is not "
                                      f"supported (this build reads version {FORMAT_VERSION})")
        d = dict(d)
        d["grid"] = tuple(d["grid"]) if d.get("grid") else None
        d["ranges8"] = {k: tuple(v) for k, v in d["ranges8"].items()}
        d["ranges_low"] = {k: tuple(v) for k, v in d.get("ranges_low", {}).items()}
        return cls(**d)

    def save(self, path: str) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=1)
        os.replace(tmp, path)       # no half-written policy files

    @classmethod
    def load(cls, path: str, model: str | None = None, model_hash: str | None = None,
             split_index: int | None = None, grid: tuple[int, int] | None = None) -> "Policy":
        try:
            with open(path) as f:
                pol = cls.from_json(json.load(f))
        except (OSError, json.JSONDecodeError, TypeError, KeyError) as e:
            raise PolicyMismatchError(f"cannot read policy {path}: {e}") from e
        if model is not None and pol.model != model:
            raise PolicyMismatchError(f"policy {path} is for model {pol.model!r}, not {model!r}")
        if model_hash is not None and pol.model_hash != model_hash:
            raise PolicyMismatchError(
                f"policy {path} was made for other weights of {pol.model} (hash "
                f"{pol.model_hash}, these weights {model_hash}); search again")
        if grid is not None and (pol.split_index, pol.grid) != (split_index, tuple(grid)):
            raise PolicyMismatchError(
                f"policy {path} is for the plan split {pol.split_index} grid {pol.grid}, "
                f"not split {split_index} grid {tuple(grid)}")
        return pol
