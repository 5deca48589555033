"""Exact integer simulation of a policy, with the runtime routing the device performs.

Per input and per patch the branch computes the classification map at 8 bits, compares its
max with the integer threshold T_q (what the generated C does), and either continues at 8 bits
(outlier) or re-expresses the map in the low-bit branch's quantization and continues there.
Both branches write the stage output in the same 8-bit quantization; the rest of the network
runs layer by layer.
"""
from __future__ import annotations

import numpy as np

from ..graph import Graph
from ..patch import PatchPlan, analyze, input_window, run_patch, run_rest
from ..quant import INPUT_QUANT, QGraph, requant_int, run_int
from ..quant.policy import Policy, integer_thresholds  # noqa: F401  (integer_thresholds: compat)


def layer_bitops(graph: Graph, macs: int, layer, in_bits: dict, w_bits: dict) -> int:
    """BitOPs = MACs × weight bits × input-activation bits."""
    if layer.op not in ("conv2d", "dense"):
        return 0
    return macs * w_bits.get(layer.name, 8) * in_bits.get(layer.inputs[0], 8)


class Simulator:
    def __init__(self, graph: Graph, policy: Policy, plan: PatchPlan | None = None):
        self.graph, self.policy = graph, policy
        if plan is None and policy.split_index is not None:
            plan = analyze(graph, policy.split_index, policy.grid)
        self.plan = plan
        self.qg8: QGraph = policy.qgraph8(graph)
        self.qg_low: QGraph = policy.qgraph_low(graph)
        if plan is not None:
            policy.check_branches(self.qg8, self.qg_low, plan.stage_output)
        self.cmap = policy.classification_map
        self.threshold_q, self.threshold_q_lo = policy.thresholds_q(self.qg8)
        self._bitops_tables()

    # ---- BitOPs
    def _bitops_tables(self) -> None:
        g, pol = self.graph, self.policy
        bits8 = {t: 8 for t in g.shapes}
        bits_low = {t: pol.act_bits(t) for t in g.shapes}
        wb = pol.w_bits
        if self.plan is None:
            self.bitops_stage8 = self.bitops_stage_low = np.zeros(0)
            self.bitops_rest = sum(layer_bitops(g, g.macs(l), l, bits_low, wb) for l in g.layers)
            return
        ps = self.plan.all_patches()
        self.bitops_stage8 = np.array([sum(layer_bitops(g, lp.macs, g.layer(lp.layer), bits8, wb)
                                           for lp in p.layers) for p in ps], np.int64)
        self.bitops_stage_low = np.array([sum(layer_bitops(g, lp.macs, g.layer(lp.layer),
                                                           bits_low, wb) for lp in p.layers)
                                          for p in ps], np.int64)
        self.bitops_rest = sum(layer_bitops(g, g.macs(l), l, bits_low, wb)
                               for l in self.plan.rest_layers)

    def stage_bitops(self, outlier: np.ndarray) -> np.ndarray:
        """Patch-stage BitOPs per image given the routing decisions [image, patch]."""
        if self.plan is None:
            return np.zeros(len(outlier), np.int64)
        return np.where(outlier, self.bitops_stage8, self.bitops_stage_low).sum(axis=1)

    # ---- execution
    def route(self, patch, window: np.ndarray):
        """Run one patch's branch for a batch; returns (env of the patch, outlier flags)."""
        pol = self.policy
        if not pol.vdpc:
            return run_patch(self.qg_low, self.plan, patch, window), np.zeros(len(window), bool)
        env8 = run_patch(self.qg8, self.plan, patch, window,
                         upto=self.graph.producer(self.cmap).name)
        c = env8[self.cmap]
        flat = c.reshape(len(c), -1)
        flags = (flat.max(axis=1) >= self.threshold_q) | (flat.min(axis=1) <= self.threshold_q_lo)
        out = {}
        for sel, qg in ((flags, self.qg8), (~flags, self.qg_low)):
            if not sel.any():
                continue
            # what the branch computed so far, re-expressed in the chosen branch's quantization
            env = {t: requant_int(v[sel], self.qg8.acts[t], qg.acts[t]) for t, v in env8.items()}
            env = run_patch(qg, self.plan, patch, window[sel], env=env)
            for t, v in env.items():
                if t not in out:
                    out[t] = np.zeros((len(window),) + v.shape[1:], np.int32)
                out[t][sel] = v
        return out, flags

    def run(self, x_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(quantized logits N×classes, outlier decisions N×patches) for NHWC input values."""
        x_q = np.asarray(x_q, np.int32)
        if self.plan is None:
            return run_int(self.qg_low, x_q), np.zeros((len(x_q), 0), bool)
        plan = self.plan
        c, h, w = self.graph.shapes[plan.stage_output]
        stage = np.zeros((len(x_q), h, w, c), np.int32)
        flags = []
        for p in plan.all_patches():
            env, f = self.route(p, input_window(plan, p, x_q))
            flags.append(f)
            t, r = p.tile, p.regions[plan.stage_output]
            stage[:, t.h0:t.h1, t.w0:t.w1, :] = \
                env[plan.stage_output][:, t.h0 - r.h0:t.h1 - r.h0, t.w0 - r.w0:t.w1 - r.w0, :]
        return run_rest(self.qg_low, plan, stage), np.stack(flags, axis=1)


def evaluate(sim: Simulator, images_labels, bar=None) -> dict:
    """Top-1, BitOPs and routing statistics of a policy over (images N×C×H×W, labels) batches.
    `sim` is a Simulator or anything with its run/stage_bitops/bitops_rest/plan (engine.py)."""
    preds, flags = [], []
    labels = []
    for x, y in images_labels:
        x_q = INPUT_QUANT.quantize(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
        out, f = sim.run(x_q)
        preds.append(out.argmax(1))
        flags.append(f)
        labels.append(y)
        if bar is not None:
            bar.update(len(x))
    p, y, f = np.concatenate(preds), np.concatenate(labels), np.concatenate(flags)
    stage = sim.stage_bitops(f)
    res = {"top1": float((p == y).mean()), "images": int(len(y)),
           "bitops_patch_stage": float(stage.mean()) if sim.plan is not None else 0.0,
           "bitops_total": float(stage.mean() + sim.bitops_rest) if len(y) else 0.0,
           "outlier_patch_rate": float(f.mean()) if f.size else 0.0,
           "predictions": p, "routing": f}
    if sim.plan is not None and f.size:
        pr, pc = sim.plan.grid
        res["outlier_patch_rate_per_position"] = f.mean(axis=0).reshape(pr, pc).round(4).tolist()
    return res
