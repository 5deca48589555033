"""A quantization policy: the plan, the VDPC routing, and the bits and ranges of each branch.

Saved as versioned JSON. A policy is bound to one model (by checkpoint hash) and one patch
plan; loading it for anything else is refused.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from ..graph import Graph
from ..quant import QGraph, quantize_graph

FORMAT_VERSION = 1
POLICIES = ("quantmcu", "int8", "layerwise-int8", "memory-driven", "rl")


class PolicyMismatchError(ValueError):
    """A policy file does not belong to this model or plan."""


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
