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
    "hb"       (default) (H_8 - H_b) / H_b, the entropy lost per bit of entropy kept (grows
               steeply as b shrinks, as the accuracy does);
    "h8"       (H_8 - H_b) / H_8, the fraction of the 8-bit entropy lost.
hb is the default because its λ front is better on the validation split of both zoo models
(benchmarks/search.py compares them; h8 barely tells 2 bits from 4).
A constant rescaling of either term only moves λ, so these are the per-map choices that change
the front. S(i, 8) = 0, so a lower width is taken only when it pays. The stage output keeps
8 bits (both VDPC branches write it in one quantization).

Weights (candidate_w_bits, default {8, 4}; {8} searches activations only): BitOPs are
MACs × weight bits × input bits, so each weighted layer l of the stage gets the same score
just before its output map, with
Φ(l, w): BitOPs saved on l itself by w-bit weights (its input at the width already chosen);
Ω(l, w): H(Y⁸ | Yʷ) / H(Y⁸), the share of the entropy of l's 8-bit output map that is lost
    (not recoverable from the output) when l's weights have w bits — for a map that is a
    function of its 8-bit version, as an activation width is, this is the Ω above; "hb"
    divides by what is kept, H(Y⁸) − H(Y⁸ | Yʷ).
Weights are shared by both VDPC branches (one copy in flash), so a weight width applies to the
outlier branch too; with VDPC the layers up to the classification map keep 8-bit weights (every
patch runs them before it is routed).

Device Φ (phi="device", ours): on the Cortex-M4 BitOPs do not predict time — a 4-bit map read
by a kernel with 8-bit weights costs the same SMLADs, and only packed ≤ 4-bit weights against
≤ 4-bit activations pay (topi/wpack.py). Φ(i, b) is then the modelled device cost (cycles of
the real kernels, devcost.py) saved on the producer and the consumers of map i, divided by the
stage's 8-bit cost. Because only the pair (input width, weight width) of a kernel decides its
speed, a map whose next layer is a searchable weighted layer reading only it is chosen together
with that layer's weights: candidates (b, w), Ω(i, b) + Ω(l, w | i at b), Φ the cost saved by
the pair. Other layers' weights keep their own score (device cost saved, output at 8 bits).

Layer-wise rest (rest=True, device Φ without VDPC; our extension, not the paper's): after the
stage, the maps and weights of the layers that run layer by layer are searched the same way,
in dataflow order, with the same Φ (cost saved on the producer and consumers, over the same
8-bit stage cost, so one λ means one price everywhere) and Ω measured on whole calibration
tensors (patch-based inference computes the stage exactly as layer by layer does). The
network's output keeps 8 bits.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..graph import Graph
from ..patch import PatchPlan, input_window, run_patch
from ..quant import INPUT_QUANT, quantize_graph, requant_int
from .calibrate import StageCalibration, best_range
from .devcost import DeviceCost, NetworkSpecs

DEFAULT_BITS = (8, 4, 2)
# memoised branch tensors kept across keys and λs; above this, only the current key's
# ancestors are kept (the rest is recomputed when asked for again)
ENV_CACHE_BYTES = 1 << 30
# integer branch tensors of the entropy images along one key (every patch, every stage map)
ENTROPY_BYTES = 512 << 20
DEFAULT_W_BITS = (8, 4)
PHI_NORMS = ("stage", "consumer")
PHIS = ("bitops", "device")
OMEGA_NORMS = ("h8", "hb")


def entropy(q: np.ndarray, bits: int) -> float:
    """Shannon entropy (bits) of the histogram of quantized values."""
    return counts_entropy(np.bincount(np.asarray(q).reshape(-1), minlength=1 << bits))


def counts_entropy(counts: np.ndarray) -> float:
    """Shannon entropy (bits) of a histogram."""
    counts = counts.astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def conditional_entropy(y: np.ndarray, z: np.ndarray, bits: int) -> float:
    """H(Y | Z) in bits for paired quantized values y, z of `bits` bits (joint histogram)."""
    y = np.asarray(y).reshape(-1)
    z = np.asarray(z).reshape(-1)
    n = 1 << bits
    if bits > 15 or not y.size or min(y.min(), z.min()) < 0 or max(y.max(), z.max()) >= n:
        y, z = y.astype(np.int64), z.astype(np.int64)
        return entropy(y * n + z, 2 * bits) - entropy(z, bits)
    # Ω's hot spot (maps of every calibration patch): the joint index in 32 bits, and Z's
    # histogram as the joint one's column sums, the same counts as histograms of 64-bit copies
    joint = y.astype(np.int32)
    joint *= n
    joint += z
    joint = np.bincount(joint, minlength=n * n)
    return counts_entropy(joint) - counts_entropy(joint.reshape(n, n).sum(axis=0))


@dataclass
class VDQSResult:
    bits: dict[str, int]
    ranges: dict[str, tuple[float, float]]
    table: list[dict] = field(default_factory=list)   # one row per (map or layer, b)
    seconds: float = 0.0
    w_bits: dict[str, int] = field(default_factory=dict)   # searched layers below 8 bits


class VDQS:
    """The search state shared by every λ: calibration windows, low-bit ranges, BitOPs."""

    def __init__(self, graph: Graph, plan: PatchPlan, cal: StageCalibration,
                 ranges8: dict, cal_images: np.ndarray, candidate_bits=DEFAULT_BITS,
                 range_method: str = "mse", range_pct: float = 99.9, w_bits=None,
                 vdpc: bool = True, phi_norm: str = "stage", omega_norm: str = "hb",
                 candidate_w_bits=DEFAULT_W_BITS, phi: str = "bitops",
                 device: DeviceCost | None = None, budget_bytes: int | None = None,
                 rest: bool = False, samples_of=None, rest_bits=(8, 4),
                 rest_w_bits=(8, 4)):
        """vdpc=False: one branch for every patch (no routing), calibrated on all patches.
        phi: "bitops" (the paper's) or "device" (modelled cost of the real kernels, measured
        through `device`, default a DeviceCost on the Cortex-M4). budget_bytes (device Φ,
        without VDPC): a width is a candidate only if the patch-based peak SRAM can still meet
        the budget with every later map at the lowest width. rest (device Φ, without VDPC):
        search the layer-wise rest too (activation widths rest_bits, weight widths
        rest_w_bits), its ranges from samples_of(tensor) (float samples)."""
        if phi not in PHIS:
            raise ValueError(f"VDQS phi={phi!r}: one of {', '.join(PHIS)}")
        if phi_norm not in PHI_NORMS or omega_norm not in OMEGA_NORMS:
            raise ValueError(f"VDQS normalisation phi_norm={phi_norm!r} omega_norm="
                             f"{omega_norm!r}: phi_norm is one of {PHI_NORMS}, omega_norm one "
                             f"of {OMEGA_NORMS}")
        self.phi_norm, self.omega_norm = phi_norm, omega_norm
        self.graph, self.plan, self.cal, self.ranges8 = graph, plan, cal, ranges8
        self.vdpc = vdpc
        self._omega_cache: dict = {}
        self._env_cache: dict = {}
        self._env_bytes: dict = {}        # key → bytes of the tensors the key added
        self.candidate_bits = tuple(sorted(set(candidate_bits) | {8}, reverse=True))
        self.w_bits = w_bits or {}
        self.maps = [l.output for l in plan.stage_layers if l.output != plan.stage_output]
        self.candidate_w_bits = tuple(sorted(set(candidate_w_bits) | {8}, reverse=True))
        first = [] if not vdpc else \
            [l.name for l in plan.stage_layers[:self._index_of(cal.classification_map) + 1]]
        self.wlayers = [l.name for l in plan.stage_layers if l.weight is not None
                        and l.name not in first and l.name not in self.w_bits] \
            if len(self.candidate_w_bits) > 1 else []
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
        self.rest = bool(rest) and phi == "device" and not vdpc
        self.rest_maps: list[str] = []
        if self.rest:
            if samples_of is None:
                raise ValueError("VDQS rest=True needs samples_of (float samples of the rest)")
            self.rest_bits = tuple(sorted(set(rest_bits) | {8}, reverse=True))
            self.rest_w_bits = tuple(sorted(set(rest_w_bits) | {8}, reverse=True))
            self.rest_maps = [l.output for l in plan.rest_layers if l.output != graph.output]
            self.low_ranges.update({(m, b): best_range(samples_of(m), b, range_method,
                                                       range_pct)
                                    for m in self.rest_maps for b in self.rest_bits})
            if len(self.rest_w_bits) > 1:
                self.wlayers += [l.name for l in plan.rest_layers if l.weight is not None
                                 and l.name not in self.w_bits]
            self.x_q = x_q
            self._rest_cache: dict = {}
        self.phi_kind = phi
        self.budget_bytes = None if vdpc else budget_bytes
        self._peaks: dict = {}
        if phi == "device":
            self.device = device or DeviceCost()
            self.net = NetworkSpecs(graph, plan)
            self._prefetch()
            self.stage_cost8 = sum(self._cost(l.name, {}, {}) for l in plan.stage_layers)

    def _index_of(self, m: str) -> int:
        return next(i for i, l in enumerate(self.plan.stage_layers) if l.output == m)

    def _bitops(self) -> None:
        g, wb = self.graph, self.w_bits
        self.stage_bitops8 = 0
        self.saving_per_bit = {m: 0 for m in self.maps}   # BitOPs per input bit of map m
        self.layer_macs: dict[str, int] = {}               # over every patch, halo included
        for p in self.plan.all_patches():
            for lp in p.layers:
                l = g.layer(lp.layer)
                if l.op not in ("conv2d", "dense"):
                    continue
                self.layer_macs[l.name] = self.layer_macs.get(l.name, 0) + lp.macs
                per_bit = lp.macs * wb.get(l.name, 8)
                self.stage_bitops8 += per_bit * 8
                if l.inputs[0] in self.saving_per_bit:
                    self.saving_per_bit[l.inputs[0]] += per_bit

    def phi(self, m: str, b: int) -> float:
        if self.phi_norm == "consumer":
            return (8 - b) / 8 if self.saving_per_bit[m] else 0.0
        return self.saving_per_bit[m] * (8 - b) / self.stage_bitops8

    def phi_w(self, layer: str, w: int, in_bits: int) -> float:
        """BitOPs saved on `layer` by w-bit weights, its input at in_bits."""
        if self.phi_norm == "consumer":
            return (8 - w) / 8
        return self.layer_macs.get(layer, 0) * in_bits * (8 - w) / self.stage_bitops8

    # ---- device Φ
    def _cost(self, layer: str, bits: dict, w_bits: dict) -> float:
        """Modelled cost per inference of a stage layer's calls (every patch)."""
        c = self.net.call(layer, bits, w_bits)
        return self.device.cost(c.spec) * c.runs

    def _prefetch(self) -> None:
        """Measure every spec the search can ask for in one batch (distinct specs only)."""
        specs = []
        rest = {l.name for l in self.plan.rest_layers} if self.rest else set()
        for l in self.plan.stage_layers + (self.plan.rest_layers if self.rest else []):
            bits_c, w_c = (self.rest_bits, self.rest_w_bits) if l.name in rest else \
                (self.candidate_bits, self.candidate_w_bits)
            ws = w_c if l.name in self.wlayers else (self.w_bits.get(l.name, 8),)
            for a_in in bits_c:
                for a_out in bits_c:
                    for w in ws:
                        bits = {t: a_in for t in l.inputs}
                        bits[l.output] = a_out
                        specs.append(self.net.call(l.name, bits, {l.name: w}).spec)
        self.device.costs(specs)

    def _saving(self, m: str, b: int, bits: dict, w_bits: dict, pair_w: dict) -> float:
        """Device cost saved on m's producer and stage consumers when m has b bits (and the
        consumers in pair_w those weight widths), normalised by the stage's 8-bit cost."""
        stage = {l.name for l in self.plan.stage_layers}
        layers = [self.graph.producer(m).name] + [c.name for c in self.graph.consumers(m)
                                                  if c.name in stage or self.rest]
        before = dict(bits, **{m: 8})
        after = dict(bits, **{m: b})
        w_after = dict(w_bits, **pair_w)
        saved = sum(self._cost(n, before, w_bits) - self._cost(n, after, w_after)
                    for n in layers)
        return saved / self.stage_cost8

    def _saving_w(self, layer: str, w: int, bits: dict, w_bits: dict) -> float:
        return (self._cost(layer, bits, w_bits) - self._cost(layer, bits, dict(w_bits, **{layer: w}))) \
            / self.stage_cost8

    def fits(self, bits: dict) -> bool:
        """Whether the stage maps at `bits` (the maps not in it at the lowest width) can meet
        the budget (always, with VDPC: its buffers are sized for the 8-bit branch)."""
        if self.budget_bytes is None:
            return True
        low = min(self.candidate_bits)
        full = {m: bits.get(m, low) for m in self.maps}
        key = tuple(sorted(full.items()))
        if key not in self._peaks:
            from ..patch import analyze
            self._peaks[key] = analyze(self.graph, self.plan.split_index, self.plan.grid,
                                       full).peak_sram_patch_bytes
        return self._peaks[key] <= self.budget_bytes

    def omega_pair_table(self, prefix: tuple, m: str, w: int, b: int, nxt: str) -> dict:
        """Ω(nxt, w') of each candidate weight width of layer `nxt` (which reads only m), with
        m at b bits (its producer's weights w)."""
        key = (prefix, m, w, b, nxt, "pair")
        if key not in self._omega_cache:
            out = self.graph.layer(nxt).output
            self._omega_cache[key] = self._omegas(
                prefix + ((m, b, w),), {wc: (out, 8, wc) for wc in self.candidate_w_bits},
                weights=True)
        return self._omega_cache[key]

    def _search_device(self, lam: float) -> VDQSResult:
        t0 = time.time()
        chosen: dict[str, int] = {}
        w_chosen: dict[str, int] = {}
        fixed: dict[str, int] = {}        # weight widths chosen with their input map
        table: list[dict] = []
        prefix: tuple = ()
        layers = self.plan.stage_layers
        for i, l in enumerate(layers):
            m = l.output
            w = fixed.get(l.name, 8)
            if l.name in self.wlayers and l.name not in fixed:
                w = self._best(lam, self.omega_w_table(prefix, m),
                               lambda c: self._saving_w(l.name, c, chosen, w_chosen), table,
                               {"layer": l.name, "kind": "weight"})
            if w != 8:
                w_chosen[l.name] = w
            if m in self.maps:
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                pair = nxt.name if (nxt is not None and nxt.name in self.wlayers
                                    and list(nxt.inputs) == [m]) else None
                act = self.omega_table(prefix, m, w)
                omega, phi = {}, {}
                for b in self.candidate_bits:
                    wo = self.omega_pair_table(prefix, m, w, b, pair) if pair else {8: 0.0}
                    for wc, ow in wo.items():
                        omega[(b, wc)] = act[b] + ow
                        phi[(b, wc)] = self._saving(m, b, chosen, w_chosen,
                                                    {pair: wc} if pair else {})
                allowed = {k for k in omega if self.fits(dict(chosen, **{m: k[0]}))}
                b, wc = self._best(lam, omega, phi.__getitem__, table,
                                   {"map": m, "kind": "activation+weight" if pair
                                    else "activation", **({"layer": pair} if pair else {})},
                                   zero=(8, 8), allowed=allowed or None)
                chosen[m] = b
                if pair:
                    fixed[pair] = wc
            prefix += ((m, chosen.get(m, 8), w),)
        ranges = {m: self.low_ranges[(m, chosen[m])] for m in self.maps}
        if self.rest:
            self._search_rest(lam, chosen, w_chosen, fixed, table)
            ranges.update({m: self.low_ranges[(m, chosen[m])] for m in self.rest_maps
                           if chosen.get(m, 8) != 8})
        low = {m: b for m, b in chosen.items() if b != 8}
        return VDQSResult(low, ranges, table, time.time() - t0, w_chosen)

    # ---- the layer-wise rest (rest=True)
    def _act(self, t: str, bits: dict):
        from ..quant.qparams import ActQuant
        if t == self.graph.input:
            return self.qg8.acts[t]
        b = bits.get(t, 8)
        if t in self.maps or b != 8:
            lo, hi = self.low_ranges[(t, b)]
        else:
            lo, hi = self.ranges8[t]
        return ActQuant.from_range(lo, hi, b)

    def _run_layer(self, name: str, env: dict, bits: dict, w: int) -> np.ndarray:
        from ..quant.reference import quantize_layer
        l = self.graph.layer(name)
        q = quantize_layer(l, [self._act(t, bits) for t in l.inputs], self._act(l.output, bits),
                           w)
        return q.run([env[t] for t in l.inputs])

    def _rest_env(self, chosen: dict, w_chosen: dict) -> dict:
        """Every tensor up to the stage output on the entropy images, the stage as chosen."""
        key = (tuple(sorted(chosen.items())), tuple(sorted(w_chosen.items())))
        if key not in self._rest_cache:
            self._rest_cache.clear()
            ranges = dict(self.ranges8)
            ranges.update({m: self.low_ranges[(m, chosen.get(m, 8))] for m in self.maps})
            qg = quantize_graph(self.graph, ranges, chosen, dict(self.w_bits, **w_chosen))
            env = {self.graph.input: np.asarray(self.x_q, np.int32)}
            for l in self.plan.stage_layers:
                env[l.output] = qg.qlayer(l.name).run([env[t] for t in l.inputs])
            self._rest_cache[key] = env
        return dict(self._rest_cache[key])

    def _search_rest(self, lam: float, chosen: dict, w_chosen: dict, fixed: dict,
                     table: list) -> None:
        """The rest's widths (module doc), added to chosen / w_chosen."""
        env = self._rest_env(chosen, w_chosen)
        layers = self.plan.rest_layers
        ent = lambda y, b: entropy(y, b)     # noqa: E731
        for i, l in enumerate(layers):
            m = l.output
            w = fixed.get(l.name, 8)
            if l.name in self.wlayers and l.name not in fixed:
                outs = {wc: self._run_layer(l.name, env, chosen, wc)
                        for wc in self.rest_w_bits}
                h8 = ent(outs[8], 8)
                omega_w = {wc: self._normalise(conditional_entropy(outs[8], outs[wc], 8)
                                               if wc != 8 else 0.0, h8) for wc in outs}
                w = self._best(lam, omega_w,
                               lambda c: self._saving_w(l.name, c, chosen, w_chosen), table,
                               {"layer": l.name, "kind": "weight"})
            if w != 8:
                w_chosen[l.name] = w
            if m not in self.rest_maps:
                env[m] = self._run_layer(l.name, env, chosen, w)
                continue
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            pair = nxt.name if (nxt is not None and nxt.name in self.wlayers
                                and list(nxt.inputs) == [m]) else None
            ys = {b: self._run_layer(l.name, env, dict(chosen, **{m: b}), w)
                  for b in self.rest_bits}
            h = {b: ent(y, b) for b, y in ys.items()}
            omega, phi = {}, {}
            for b in self.rest_bits:
                act = self._normalise(h[8] - h[b], h[8])
                wo = {8: 0.0}
                if pair:
                    bits_b = dict(chosen, **{m: b})
                    e = dict(env, **{m: ys[b]})
                    outs = {wc: self._run_layer(pair, e, bits_b, wc)
                            for wc in self.rest_w_bits}
                    h8 = ent(outs[8], 8)
                    wo = {wc: self._normalise(conditional_entropy(outs[8], outs[wc], 8)
                                              if wc != 8 else 0.0, h8) for wc in outs}
                for wc, ow in wo.items():
                    omega[(b, wc)] = act + ow
                    phi[(b, wc)] = self._saving(m, b, chosen, w_chosen,
                                                {pair: wc} if pair else {})
            b, wc = self._best(lam, omega, phi.__getitem__, table,
                               {"map": m, "kind": "activation+weight" if pair
                                else "activation", **({"layer": pair} if pair else {})},
                               zero=(8, 8))
            chosen[m] = b
            env[m] = ys[b]
            if pair:
                fixed[pair] = wc

    def _branch_envs(self, key: tuple) -> list[dict]:
        """Per-patch tensors of the low-bit branch on the non-outlier calibration windows.
        key: (map, bits, producer's weight bits) per stage layer so far, in dataflow order
        (the stage output at 8 bits). Memoised: extending a key by one entry runs one layer."""
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
            envs = self._step(self._branch_envs(key[:-1]), key)
        self._remember(key, envs)
        return envs

    def _remember(self, key: tuple, envs: list[dict]) -> None:
        m = key[-1][0] if key else self.graph.input
        added = sum(e[m].nbytes for e in envs if m in e)
        if sum(self._env_bytes.values()) + added > ENV_CACHE_BYTES:
            keep = {key[:i] for i in range(len(key))}
            for k in [k for k in self._env_cache if k not in keep]:
                del self._env_cache[k], self._env_bytes[k]
        self._env_cache[key] = envs
        self._env_bytes[key] = added

    def _step(self, parent: list[dict], key: tuple) -> list[dict]:
        """The parent's tensors plus key's last entry, computed."""
        m = key[-1][0]
        qg = self._quantized(key)
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
        return envs

    def _quantized(self, key: tuple):
        bits = {m: b for m, b, _ in key if m in self.maps}
        w_bits = dict(self.w_bits)
        w_bits.update({self.graph.producer(m).name: w for m, _, w in key if w != 8})
        ranges = dict(self.ranges8)
        ranges.update({m: self.low_ranges[(m, b)] for m, b in bits.items()})
        return quantize_graph(self.graph, ranges, bits, w_bits)

    def _values(self, key: tuple) -> np.ndarray:
        m = key[-1][0]
        vals = [e[m].reshape(-1) for e in self._branch_envs(key) if m in e]
        return np.concatenate(vals) if vals else np.zeros(0, np.int64)

    def _normalise(self, lost: float, h8: float) -> float:
        """h8: lost / H8; hb: lost / what is kept, H8 - lost."""
        return lost / max(h8, 1e-12) if self.omega_norm == "h8" else lost / max(h8 - lost, 1e-12)

    def _omegas(self, prefix: tuple, cands: dict, weights: bool) -> dict[int, float]:
        """Ω of each candidate entry (by width, 8 included) after `prefix`; module doc."""
        if not weights:      # the map's own histogram at each width
            ent = {b: entropy(self._values(prefix + (e,)), b) for b, e in cands.items()}
            return {b: self._normalise(ent[8] - ent[b], ent[8]) for b in cands}
        y8 = self._values(prefix + (cands[8],))
        h8 = entropy(y8, 8)
        return {b: self._normalise(conditional_entropy(y8, self._values(prefix + (e,)), 8)
                                   if b != 8 else 0.0, h8) for b, e in cands.items()}

    def omega_table(self, prefix: tuple, m: str, w: int = 8) -> dict[int, float]:
        """Ω(m, b) for each candidate b, the earlier entries of the branch as in `prefix` and
        the producer of m with w-bit weights."""
        key = (prefix, m, w)
        if key not in self._omega_cache:
            self._omega_cache[key] = self._omegas(
                prefix, {b: (m, b, w) for b in self.candidate_bits}, weights=False)
        return self._omega_cache[key]

    def omega_w_table(self, prefix: tuple, m: str) -> dict[int, float]:
        """Ω(l, w) for each candidate weight width of m's producer l (m at 8 bits)."""
        key = (prefix, m, "w")
        if key not in self._omega_cache:
            self._omega_cache[key] = self._omegas(
                prefix, {w: (m, 8, w) for w in self.candidate_w_bits}, weights=True)
        return self._omega_cache[key]

    def clear_cache(self) -> None:
        """Forget the memoised branch tensors and Ω tables (shared by every λ)."""
        self._env_cache.clear()
        self._env_bytes.clear()
        self._omega_cache.clear()

    def _best(self, lam: float, omega: dict, phi, table: list, row: dict, zero=8,
              allowed: set | None = None):
        """The width (or (width, weight width) pair) maximising S = -λ·Ω + (1-λ)·Φ (S = 0 at
        `zero`, all 8 bits) among `allowed` (default: every candidate)."""
        best_b, best_s = zero, (0.0 if allowed is None or zero in allowed else -np.inf)
        for b in omega:
            s = -lam * omega[b] + (1 - lam) * phi(b) if b != zero else 0.0
            width = {"bits": b[0], "w_bits": b[1]} if isinstance(b, tuple) else {"bits": b}
            table.append({**row, **width, "omega": round(omega[b], 5),
                          "phi": round(phi(b), 5), "score": round(s, 5)})
            if allowed is not None and b not in allowed:
                table[-1]["fits"] = False
                continue
            if s > best_s + 1e-12:
                best_b, best_s = b, s
        return best_b

    def search(self, lam: float, cold: bool = False) -> VDQSResult:
        """The per-map (and per-layer weight) widths for λ. cold=True starts from empty
        caches, so the returned seconds are what this search costs on its own, not after
        earlier λs."""
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"λ must be in [0, 1], got {lam}")
        if cold:
            self.clear_cache()
        if self.phi_kind == "device":
            return self._search_device(lam)
        t0 = time.time()
        chosen: dict[str, int] = {}
        w_chosen: dict[str, int] = {}
        table: list[dict] = []
        prefix: tuple = ()
        for l in self.plan.stage_layers:
            m = l.output
            w = 8
            if l.name in self.wlayers:
                in_bits = chosen.get(l.inputs[0], 8)
                w = self._best(lam, self.omega_w_table(prefix, m),
                               lambda b: self.phi_w(l.name, b, in_bits), table,
                               {"layer": l.name, "kind": "weight"})
                if w != 8:
                    w_chosen[l.name] = w
            if m in self.maps:
                chosen[m] = self._best(lam, self.omega_table(prefix, m, w),
                                       lambda b: self.phi(m, b), table,
                                       {"map": m, "kind": "activation"})
            prefix += ((m, chosen.get(m, 8), w),)
        low = {m: b for m, b in chosen.items() if b != 8}
        # the low-bit branch recalibrates every map on non-outlier patches, 8-bit ones too
        ranges = {m: self.low_ranges[(m, chosen[m])] for m in self.maps}
        return VDQSResult(low, ranges, table, time.time() - t0, w_chosen)

    def uniform(self, b: int) -> VDQSResult:
        """Every searchable map at b bits (the 'VDPC + uniform b-bit' ablation)."""
        bits = {m: b for m in self.maps} if b != 8 else {}
        return VDQSResult(bits, {m: self.low_ranges[(m, b)] for m in self.maps})


def entropy_image_count(plan: PatchPlan, images: int, max_bytes: int = ENTROPY_BYTES) -> int:
    """How many of `images` calibration images Ω is measured on: all of them unless the
    int32 tensors of every patch along one branch would exceed max_bytes (large inputs)."""
    per_image = 4 * sum((r.h1 - r.h0) * (r.w1 - r.w0) * plan.graph.shapes[t][0]
                        for p in plan.all_patches() for t, r in p.regions.items())
    return max(1, min(images, max_bytes // max(per_image, 1)))
