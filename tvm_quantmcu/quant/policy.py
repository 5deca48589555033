"""A quantization policy: the plan, the VDPC routing, and the bits and ranges of each branch.

Saved as versioned JSON. A policy is bound to one model (by checkpoint hash) and one patch
plan; loading it for anything else is refused. It lives with the integer semantics, below the
search that makes it and the passes and code generator that consume it.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..graph import Graph
from .qparams import ACT_BITS, WEIGHT_BITS, ActQuant
from .reference import QGraph, quantize_graph

FORMAT_VERSION = 1
POLICIES = ("quantmcu", "int8", "layerwise-int8", "memory-driven", "rl")


class PolicyMismatchError(ValueError):
    """A policy file does not belong to this model or plan, or is not a valid policy."""


BITS = tuple(sorted(set(ACT_BITS) | set(WEIGHT_BITS)))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_fields(d) -> None:
    """Raise ValueError naming the first field of a policy's JSON that breaks the format."""
    if not isinstance(d, dict):
        raise ValueError(f"the file holds a JSON {type(d).__name__}, not a policy object")
    known = {f.name for f in fields(Policy)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")
    for key in ("name", "model", "model_hash", "ranges8"):
        if key not in d:
            raise ValueError(f"field {key!r} is missing")
    for key in ("name", "model", "model_hash"):
        if not isinstance(d[key], str):
            raise ValueError(f"{key} must be a string, not {d[key]!r}")
    if d.get("split_index") is not None and not (_is_int(d["split_index"])
                                                 and d["split_index"] >= 0):
        raise ValueError(f"split_index must be a layer index (0 or more) or null, not "
                         f"{d['split_index']!r}")
    grid = d.get("grid")
    if grid is not None and not (isinstance(grid, list) and len(grid) == 2
                                 and all(_is_int(g) and g >= 1 for g in grid)):
        raise ValueError(f"grid must be [rows, columns] of positive integers or null, not "
                         f"{grid!r}")
    if (grid is None) != (d.get("split_index") is None):
        raise ValueError("split_index and grid must be given together (or both null)")
    for key in ("ranges8", "ranges_low"):
        ranges = d.get(key, {})
        if not isinstance(ranges, dict):
            raise ValueError(f"{key} must map tensor names to [low, high]")
        for name, r in ranges.items():
            if not (isinstance(r, list) and len(r) == 2 and all(_is_number(v) for v in r)):
                raise ValueError(f"{key}[{name!r}] must be two finite numbers [low, high], not "
                                 f"{r!r}")
            if r[0] > r[1]:
                raise ValueError(f"{key}[{name!r}] is inverted: low {r[0]} > high {r[1]}")
    for key in ("bits_low", "w_bits"):
        bits = d.get(key, {})
        if not isinstance(bits, dict):
            raise ValueError(f"{key} must map names to bit widths")
        for name, b in bits.items():
            if not (_is_int(b) and b in BITS):
                raise ValueError(f"{key}[{name!r}] is {b!r}; bit widths are "
                                 f"{', '.join(map(str, BITS))}")
    if not isinstance(d.get("vdpc", False), bool):
        raise ValueError(f"vdpc must be true or false, not {d['vdpc']!r}")
    if d.get("threshold") is not None and not (_is_number(d["threshold"])
                                               and d["threshold"] > 0):
        raise ValueError(f"threshold must be a positive number, not {d['threshold']!r}")
    if d.get("classification_map") is not None and not isinstance(d["classification_map"], str):
        raise ValueError(f"classification_map must be a tensor name, not "
                         f"{d['classification_map']!r}")
    if d.get("vdpc") and (d.get("threshold") is None or d.get("classification_map") is None):
        raise ValueError("a VDPC policy needs a classification_map and a threshold")
    if d.get("lam") is not None and not _is_number(d["lam"]):
        raise ValueError(f"lam must be a number or null, not {d['lam']!r}")
    if not isinstance(d.get("params", {}), dict):
        raise ValueError("params must be an object")


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

    def check_graph(self, graph: Graph) -> None:
        """Raise ValueError naming the first entry that does not fit `graph`: unknown tensor or
        layer names, a split or grid outside the network, feature maps without a range."""
        tensors = [graph.input, *(l.output for l in graph.layers)]
        known = set(tensors)
        weighted = {l.name for l in graph.layers if l.weight is not None}
        for key in ("ranges8", "ranges_low", "bits_low"):
            for name in getattr(self, key):
                if name not in known:
                    raise ValueError(f"{key} names {name!r}, which is no feature map of "
                                     f"{self.model} (maps: {', '.join(tensors[:4])}, ...)")
        for name in self.w_bits:
            if name not in weighted:
                raise ValueError(f"w_bits names {name!r}, which is no layer with weights of "
                                 f"{self.model}")
        missing = [t for t in tensors if t not in self.ranges8]
        if missing:
            raise ValueError(f"ranges8 has no range for feature map {missing[0]!r}")
        if self.split_index is not None:
            if self.split_index >= len(graph.layers) - 1:
                raise ValueError(f"split_index {self.split_index} is past the network's "
                                 f"{len(graph.layers)} layers")
            _, h, w = graph.shapes[graph.layers[self.split_index].output]
            if self.grid[0] > h or self.grid[1] > w:
                raise ValueError(f"grid {self.grid[0]}x{self.grid[1]} is finer than the "
                                 f"{h}x{w} stage output")
        if self.vdpc and self.classification_map not in known:
            raise ValueError(f"classification_map {self.classification_map!r} is no feature "
                             f"map of {self.model}")

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
        if not isinstance(d, dict):
            raise PolicyMismatchError(f"not a policy: a JSON {type(d).__name__}, not an object")
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
             split_index: int | None = None, grid: tuple[int, int] | None = None,
             graph: Graph | None = None) -> "Policy":
        """Read a policy file, checked against the format and, given `graph`, against the
        model's network; any problem is a PolicyMismatchError naming the file and the field."""
        try:
            with open(path) as f:
                raw = json.load(f)
            if isinstance(raw, dict) and raw.get("version") == FORMAT_VERSION:
                check_fields(raw)
            pol = cls.from_json(raw)
        except OSError as e:
            raise PolicyMismatchError(f"cannot read policy {path}: {e.strerror}") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PolicyMismatchError(f"policy {path} is not JSON ({e}); give a file written "
                                      "by `quantmcu search --out`") from e
        except (ValueError, TypeError, KeyError) as e:
            raise PolicyMismatchError(f"policy {path} is invalid: {e}; give a file written by "
                                      "`quantmcu search --out`") from e
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
        if graph is not None:
            try:
                pol.check_graph(graph)
            except ValueError as e:
                raise PolicyMismatchError(f"policy {path} does not fit model {pol.model}: {e}; "
                                          "search a policy for this model") from e
        return pol
