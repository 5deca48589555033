"""VDQS: value-driven quantization search of the low-bit branch (no training).

For each feature map i of the patch stage, in dataflow order, and each candidate width b:

    S(i, b) = -λ·Ω(i, b) + (1 - λ)·Φ(i, b)

Φ(i, b): BitOPs saved by running map i at b bits instead of 8 (over every patch, halo
included, on the consumers of map i), normalised (phi_norm):
    "stage"    (default) divided by the whole stage's 8-bit BitOPs, so big maps weigh more;
    "consumer" divided by the 8-bit BitOPs of map i's own consumers, i.e. (8 - b) / 8.
Ω(i, b): entropy lost by quantizing map i to b bits, where H is the histogram entropy of the
quantized values over the non-outlier calibration patches, computed by the integer branch
with the earlier maps already at their chosen widths, normalised (omega_norm):
    "h8"       (default) (H_8 - H_b) / H_8, the fraction of the 8-bit entropy lost;
    "hb"       (H_8 - H_b) / H_b, the entropy lost per bit of entropy kept (grows steeply as
               b shrinks, as the accuracy does).
A constant rescaling of either term only moves λ, so these are the per-map choices that change
the front. S(i, 8) = 0, so a lower width is taken only when it pays. The stage output keeps
8 bits (both VDPC branches write it in one quantization).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..graph import Graph
from ..patch import PatchPlan, input_window, run_patch
from ..quant import INPUT_QUANT, quantize_graph, requant_int
from .calibrate import StageCalibration, best_range

DEFAULT_BITS = (8, 4, 2)
PHI_NORMS = ("stage", "consumer")
OMEGA_NORMS = ("h8", "hb")


def entropy(q: np.ndarray, bits: int) -> float:
    """Shannon entropy (bits) of the histogram of quantized values."""
    counts = np.bincount(np.asarray(q).reshape(-1), minlength=1 << bits).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


@dataclass
class VDQSResult:
    bits: dict[str, int]
    ranges: dict[str, tuple[float, float]]
    table: list[dict] = field(default_factory=list)   # one row per (map, b)
    seconds: float = 0.0


class VDQS:
    """The search state shared by every λ: calibration windows, low-bit ranges, BitOPs."""

    def __init__(self, graph: Graph, plan: PatchPlan, cal: StageCalibration,
                 ranges8: dict, cal_images: np.ndarray, candidate_bits=DEFAULT_BITS,
                 range_method: str = "mse", range_pct: float = 99.9, w_bits=None,
                 vdpc: bool = True, phi_norm: str = "stage", omega_norm: str = "h8"):
        """vdpc=False: one branch for every patch (no routing), calibrated on all patches."""
        if phi_norm not in PHI_NORMS or omega_norm not in OMEGA_NORMS:
            raise ValueError(f"VDQS normalisation phi_norm={phi_norm!r} omega_norm="
                             f"{omega_norm!r}: phi_norm is one of {PHI_NORMS}, omega_norm one "
                             f"of {OMEGA_NORMS}")
        self.phi_norm, self.omega_norm = phi_norm, omega_norm
        self.graph, self.plan, self.cal, self.ranges8 = graph, plan, cal, ranges8
        self.vdpc = vdpc
        self._omega_cache: dict = {}
        self._env_cache: dict = {}
        self.candidate_bits = tuple(sorted(set(candidate_bits) | {8}, reverse=True))
        self.w_bits = w_bits or {}
        self.maps = [l.output for l in plan.stage_layers if l.output != plan.stage_output]
        samples = cal.samples_normal if vdpc else cal.samples_all
        self.low_ranges = {(m, b): best_range(samples[m], b, range_method, range_pct)
                           for m in self.maps for b in self.candidate_bits}
        x_q = INPUT_QUANT.quantize(np.ascontiguousarray(cal_images.transpose(0, 2, 3, 1)))
        n = len(x_q)
        outl = cal.outlier[:n] if vdpc else np.zeros_like(cal.outlier[:n])
        self.windows = [(p, input_window(plan, p, x_q)[~outl[:, i]])
                        for i, p in enumerate(plan.all_patches())]
        self.qg8 = quantize_graph(graph, ranges8, 8, self.w_bits or 8)
        self._bitops()

    def _bitops(self) -> None:
        g, wb = self.graph, self.w_bits
        self.stage_bitops8 = 0
        self.saving_per_bit = {m: 0 for m in self.maps}   # BitOPs per input bit of map m
        for p in self.plan.all_patches():
            for lp in p.layers:
                l = g.layer(lp.layer)
                if l.op not in ("conv2d", "dense"):
                    continue
                per_bit = lp.macs * wb.get(l.name, 8)
                self.stage_bitops8 += per_bit * 8
                if l.inputs[0] in self.saving_per_bit:
                    self.saving_per_bit[l.inputs[0]] += per_bit

    def phi(self, m: str, b: int) -> float:
        if self.phi_norm == "consumer":
            return (8 - b) / 8 if self.saving_per_bit[m] else 0.0
        return self.saving_per_bit[m] * (8 - b) / self.stage_bitops8

    def _branch_envs(self, key: tuple) -> list[dict]:
        """Per-patch tensors of the low-bit branch on the non-outlier calibration windows,
        with the maps of `key` ((map, bits) pairs in dataflow order) at those widths.
        Memoised: extending a key by one map runs one layer."""
        if key in self._env_cache:
            return self._env_cache[key]
        if not key:
            envs = []
            for p, win in self.windows:
                env = {self.graph.input: win}
                if self.vdpc and len(win):   # the classification map is computed at 8 bits
                    c_prod = self.graph.producer(self.cal.classification_map).name
                    env = run_patch(self.qg8, self.plan, p, win, upto=c_prod)
                envs.append(env)
        else:
            parent = self._branch_envs(key[:-1])
            m, b = key[-1]
            bits = {k: v for k, v in key}
            ranges = dict(self.ranges8)
            ranges.update({k: self.low_ranges[(k, v)] for k, v in key})
            qg = quantize_graph(self.graph, ranges, bits, self.w_bits or 8)
            envs = []
            for (p, win), penv in zip(self.windows, parent):
                if not len(win):
                    envs.append(penv)
                elif m in penv:      # computed by the 8-bit classification step: re-express
                    envs.append(dict(penv, **{m: requant_int(penv[m], self.qg8.acts[m],
                                                             qg.acts[m])}))
                else:
                    envs.append(run_patch(qg, self.plan, p, win, env=penv,
                                          upto=self.graph.producer(m).name))
        self._env_cache[key] = envs
        return envs

    def omega_table(self, chosen: dict[str, int], m: str) -> dict[int, float]:
        """Ω(m, b) for each candidate b, with the earlier maps at their chosen widths."""
        prefix = tuple((k, chosen[k]) for k in self.maps if k in chosen)
        key = (prefix, m)
        if key in self._omega_cache:
            return self._omega_cache[key]
        ent = {}
        for b in self.candidate_bits:
            envs = self._branch_envs(prefix + ((m, b),))
            vals = [e[m].reshape(-1) for e in envs if m in e]
            ent[b] = entropy(np.concatenate(vals), b) if vals else 0.0
        h8 = max(ent[8], 1e-12)
        if self.omega_norm == "h8":
            omega = {b: (h8 - ent[b]) / h8 for b in self.candidate_bits}
        else:
            omega = {b: (h8 - ent[b]) / max(ent[b], 1e-12) for b in self.candidate_bits}
        self._omega_cache[key] = omega
        return self._omega_cache[key]

    def clear_cache(self) -> None:
        """Forget the memoised branch tensors and Ω tables (shared by every λ)."""
        self._env_cache.clear()
        self._omega_cache.clear()

    def search(self, lam: float, cold: bool = False) -> VDQSResult:
        """The per-map widths for λ. cold=True starts from empty caches, so the returned
        seconds are what this search costs on its own, not after earlier λs."""
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"λ must be in [0, 1], got {lam}")
        if cold:
            self.clear_cache()
        t0 = time.time()
        chosen: dict[str, int] = {}
        table = []
        for m in self.maps:
            omega = self.omega_table(chosen, m)
            best_b, best_s = 8, 0.0
            for b in self.candidate_bits:
                s = -lam * omega[b] + (1 - lam) * self.phi(m, b) if b != 8 else 0.0
                table.append({"map": m, "bits": b, "omega": round(omega[b], 5),
                              "phi": round(self.phi(m, b), 5), "score": round(s, 5)})
                if s > best_s + 1e-12:
                    best_b, best_s = b, s
            chosen[m] = best_b
        low = {m: b for m, b in chosen.items() if b != 8}
        # the low-bit branch recalibrates every map on non-outlier patches, 8-bit ones too
        ranges = {m: self.low_ranges[(m, chosen[m])] for m in self.maps}
        return VDQSResult(low, ranges, table, time.time() - t0)

    def uniform(self, b: int) -> VDQSResult:
        """Every searchable map at b bits (the 'VDPC + uniform b-bit' ablation)."""
        bits = {m: b for m in self.maps} if b != 8 else {}
        return VDQSResult(bits, {m: self.low_ranges[(m, b)] for m in self.maps})
