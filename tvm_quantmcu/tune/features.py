"""Features for the XGBoost cost model: the knob decisions (one-hot) and the task's shape.

TVM's per-store features describe the scheduled loop nest, but our trace carries only the
knob decisions (see space.py), so the candidates of a task would all look alike to them.
These features say which knobs a candidate sets, and what kind of kernel it is (op, sizes,
bits, whether it pads or can pair pixels), so that what one task teaches the model — e.g. that
a row-wise padded input pays off for 3×3 depthwise layers — carries over to similar tasks.
"""
from __future__ import annotations

import math

import numpy as np
import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.feature_extractor import PyFeatureExtractor

from ..topi.compute import OPS, never_pads
from . import space


def spec_features(spec) -> list[float]:
    oh, ow = spec.out_hw
    h, w, c = spec.in_shape
    kh, kw = spec.kernel
    return [*(float(spec.op == op) for op in OPS),
            math.log2(max(spec.macs, 1)), float(oh), float(ow), float(c),
            float(spec.out_channels), float(kh), float(kw), float(spec.stride[0]),
            float(spec.stride[1]), float(spec.in_bits), float(spec.out_bits),
            float(never_pads(spec)), float(ow % 2 == 0), math.log2(h * w * c)]


def knob_features(indices: dict[str, int]) -> list[float]:
    out = []
    for name, values in space.knob_choices().items():
        out += [float(indices.get(name) == i) for i in range(len(values))]
    return out


def candidate_features(spec, indices: dict[str, int]) -> np.ndarray:
    """One row per candidate (XGBModel sums its predictions over a candidate's rows)."""
    return np.array([spec_features(spec) + knob_features(indices)], np.float32)


@derived_object
class KnobFeatures(PyFeatureExtractor):
    def extract_from(self, context, candidates):
        spec, _ = space.spec_of(context.mod)
        return [tvm.runtime.tensor(candidate_features(spec, space.indices_from_mod(c.sch.mod)))
                for c in candidates]
