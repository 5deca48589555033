"""Device cost of the kernels a policy runs: modelled Cortex-M4 cycles and instructions per
kernel spec, measured on QEMU and cached on disk.

A kernel spec (op, shape, input/output activation bits, weight bits) is built by the kernel
registry exactly as the code generator builds it, run once on QEMU ``mps2-an386`` under
``-icount`` with the cycles plugin (``micro_project/qemu_plugin``; without it only
instructions are counted), and its instructions and modelled cycles are stored under
``~/.cache/tvm_quantmcu/devcost`` (``QMCU_DEVCOST_CACHE``) in a file named by the digest of
the kernel's generated C source, the micro-kernel headers and the measurement set-up. A
kernel whose code changes gets a new digest, so a stale cost is never read. Only distinct
specs are measured, several per QEMU program, with a progress bar.

What is modelled: the kernel calls of the generated program, each weighted by its runs per
inference (per patch in the patch stage; the VDPC branches by the outlier rate). Not modelled:
the window/tile copies, the VDPC check and the re-expression of the classification map
(about 1% of an inference on mbv2-fmnist), and the data dependence of a kernel's time (none of
the kernels branch on values). The cycles are the plugin's model (TRM costs, zero-wait
memory), not a board's.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..graph import Graph
from ..patch import PatchPlan
from ..topi.compute import KernelSpec, UnsupportedKernel
from ..topi.params import spec_for_layer

DEFAULT_BOARD = "mps2-an386"
CACHE_ENV = "QMCU_DEVCOST_CACHE"
# bump when the way a kernel is timed changes (the test program, the case data)
MEASURE_VERSION = 1
BATCH = 6                     # kernels per QEMU program
METRICS = ("cycles", "instructions")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tvm_quantmcu" / "devcost")


@dataclass(frozen=True)
class KernelCost:
    instructions: int
    cycles: int | None            # None: measured without the cycles plugin

    def value(self, metric: str) -> float:
        if metric == "cycles" and self.cycles is not None:
            return float(self.cycles)
        return float(self.instructions)


class DeviceCost:
    """Per-spec kernel costs on one board, measured on demand and cached by source digest.

    metric: "cycles" (modelled Cortex-M4 cycles; instructions when the plugin is missing) or
    "instructions". ``measured`` counts the QEMU measurements this object made."""

    def __init__(self, board: str = DEFAULT_BOARD, metric: str = "cycles",
                 schedule: str = "dsp", knobs: dict | None = None, cache: Path | None = None,
                 progress: bool = True):
        if metric not in METRICS:
            raise ValueError(f"device cost metric {metric!r}: one of {', '.join(METRICS)}")
        self.board, self.metric, self.schedule, self.knobs = board, metric, schedule, knobs
        self.cache = Path(cache) if cache is not None else cache_dir()
        self.progress = progress
        self.measured = 0
        self._mem: dict[KernelSpec, KernelCost | None] = {}

    # ---- keys
    def _kernel(self, spec: KernelSpec):
        from micro_project import qemu
        from ..topi import get_kernel
        return get_kernel(spec, self.schedule, qemu.get_board(self.board).cpu, self.knobs)

    def digest(self, kernel) -> str:
        from ..topi.registry import UKERNEL_SOURCES
        h = hashlib.sha1()
        h.update(kernel.source.encode())
        for name, text in UKERNEL_SOURCES.items():
            h.update(name.encode() + text)
        h.update(repr((self.board, MEASURE_VERSION, kernel.spec)).encode())
        return h.hexdigest()[:20]

    def _path(self, digest: str) -> Path:
        return self.cache / f"{digest}.json"

    # ---- measuring
    def costs(self, specs) -> dict[KernelSpec, KernelCost | None]:
        """Cost of every spec (None: no kernel implements it); measures the missing ones."""
        todo = [s for s in dict.fromkeys(specs) if s not in self._mem]
        missing = []
        for s in todo:
            try:
                k = self._kernel(s)
            except UnsupportedKernel:
                self._mem[s] = None
                continue
            d = self.digest(k)
            try:
                rec = json.loads(self._path(d).read_text())
                self._mem[s] = KernelCost(int(rec["instructions"]), rec.get("cycles"))
            except (OSError, ValueError, KeyError):
                missing.append((s, k, d))
        if missing:
            self._measure(missing)
        return {s: self._mem[s] for s in specs}

    def _measure(self, missing) -> None:
        from ..pipeline import progress
        from ..topi import runner
        from ..topi.cases import random_case
        bar = progress(len(missing), "device cost (QEMU)", self.progress)
        bar.unit = "kernel"
        self.cache.mkdir(parents=True, exist_ok=True)
        try:
            for i in range(0, len(missing), BATCH):
                chunk = missing[i:i + BATCH]
                cases = []
                for s, k, _ in chunk:
                    c = random_case(s, np.random.default_rng(0))
                    cases.append(runner.Case(k, c.x, c.params, c.expected, c.window))
                with tempfile.TemporaryDirectory(prefix="qmcu-devcost-") as d:
                    res = runner.run_qemu(cases, d, self.board, timeout=600.0)
                for (s, _, dig), r in zip(chunk, res):
                    if r.mismatches:
                        raise RuntimeError(f"device cost: the kernel of {s.describe()} differs "
                                           f"from the integer reference in {r.mismatches} "
                                           "output bytes on QEMU")
                    self._mem[s] = KernelCost(r.instructions, r.cycles)
                    tmp = self._path(dig).with_suffix(".tmp")
                    tmp.write_text(json.dumps({"spec": s.describe(),
                                               "instructions": r.instructions,
                                               "cycles": r.cycles}))
                    os.replace(tmp, self._path(dig))
                self.measured += len(chunk)
                bar.update(len(chunk))
        finally:
            bar.close()

    def cost(self, spec: KernelSpec) -> float:
        """The metric of one call of `spec` (inf: no kernel implements it)."""
        c = self.costs([spec])[spec]
        return float("inf") if c is None else c.value(self.metric)


# ---------------------------------------------------------------------------------------------
# the kernel specs of a network under a bit assignment (as codegen.program builds them)

@dataclass(frozen=True)
class LayerCall:
    layer: str
    spec: KernelSpec
    runs: int                     # calls per inference (patches in the stage, else 1)
    stage: bool


def _input_hwc(layer, out_hw, c) -> tuple[int, int, int]:
    if layer.op == "add":
        return (out_hw[0], out_hw[1], c)
    kh, kw = layer.ksize() if layer.op == "conv2d" else tuple(layer.kernel)
    return ((out_hw[0] - 1) * layer.stride[0] + kh, (out_hw[1] - 1) * layer.stride[1] + kw, c)


class NetworkSpecs:
    """The kernel spec of every layer of `graph` for given activation and weight widths: stage
    layers on the plan's canonical patch tile (codegen.layout), the rest on whole tensors;
    weights stored as on `target` (topi.spec_for_layer)."""

    def __init__(self, graph: Graph, plan: PatchPlan | None, target: str | None = None):
        self.graph, self.plan, self.target = graph, plan, target
        self.stage_names: set[str] = set()
        self.layout = None
        self._add_order: dict[str, tuple[int, int]] = {}
        if plan is not None:
            from ..codegen.layout import patch_layout
            self.layout = patch_layout(plan)
            self.stage_names = {l.name for l in plan.stage_layers}
            for l in plan.stage_layers:
                if l.op == "add":
                    out = l.output
                    exact = [all(h[t] == h[out] for h in self.layout.held) for t in l.inputs]
                    self._add_order[l.name] = (0, 1) if exact[1] else (1, 0)

    @property
    def patches(self) -> int:
        return 0 if self.plan is None else len(self.plan.all_patches())

    def call(self, name: str, bits, w_bits: dict | int = 8) -> LayerCall:
        """The call of layer `name` with activation widths `bits` (tensor → bits; missing: 8)
        and weight widths `w_bits` (layer → bits, or one width for this layer)."""
        g = self.graph
        l = g.layer(name)
        w = w_bits if isinstance(w_bits, int) else w_bits.get(name, 8)
        q = SimpleNamespace(layer=l, w_bits=w)
        ins = [bits.get(t, 8) for t in l.inputs]
        out = bits.get(l.output, 8)
        c_in = g.shapes[l.inputs[0]][0]
        if name in self.stage_names:
            hwc = _input_hwc(l, self.layout.sizes[l.output], c_in)
            if l.op == "add":
                a, b = self._add_order[name]
                spec = spec_for_layer(q, hwc, ins[a], out, in2_bits=ins[b],
                                      target=self.target)
            else:
                spec = spec_for_layer(q, hwc, ins[0], out, padding=(0, 0, 0, 0),
                                      target=self.target)
            return LayerCall(name, spec, self.patches, True)
        _, h, wd = g.shapes[l.inputs[0]]
        spec = spec_for_layer(q, (h, wd, c_in), ins[0], out,
                              in2_bits=ins[1] if len(ins) > 1 else 8, target=self.target)
        return LayerCall(name, spec, 1, False)

    def calls(self, bits, w_bits) -> list[LayerCall]:
        return [self.call(l.name, bits, w_bits) for l in self.graph.layers]


def policy_profile(graph: Graph, policy, model: DeviceCost, outlier_rate: float = 0.0,
                   plan: PatchPlan | None = None) -> dict:
    """Per-layer modelled cost per inference of `policy` (kernel calls only, see the module
    doc): with VDPC, the stage layers after the classification map run the 8-bit branch for
    `outlier_rate` of the patches and the low-bit one for the rest."""
    from ..patch import analyze
    if plan is None and policy.split_index is not None:
        plan = analyze(graph, policy.split_index, policy.grid)
    ns = NetworkSpecs(graph, plan)
    low = dict(policy.bits_low)
    head = set()
    if policy.vdpc and plan is not None:
        names = [l.name for l in plan.stage_layers]
        head = set(names[:names.index(graph.producer(policy.classification_map).name) + 1])
    entries = []     # (layer, branch, call, share)
    for l in graph.layers:
        if policy.vdpc and l.name in ns.stage_names and l.name not in head:
            entries.append((l.name, "8", ns.call(l.name, {}, policy.w_bits), outlier_rate))
            entries.append((l.name, "low", ns.call(l.name, low, policy.w_bits),
                            1.0 - outlier_rate))
        elif l.name in head:
            entries.append((l.name, "8", ns.call(l.name, {}, policy.w_bits), 1.0))
        else:
            entries.append((l.name, "", ns.call(l.name, low, policy.w_bits), 1.0))
    costs = model.costs([c.spec for _, _, c, _ in entries])
    rows, totals = [], {"cycles": 0.0, "instructions": 0.0, "stage_cycles": 0.0,
                        "stage_instructions": 0.0}
    for name, branch, c, share in entries:
        kc = costs[c.spec]
        if kc is None:
            raise UnsupportedKernel(f"layer {name}: {c.spec.describe()} has no kernel")
        runs = c.runs * share
        row = {"layer": name, "branch": branch, "kernel": c.spec.describe(), "runs": runs,
               "instructions": kc.instructions * runs,
               "cycles": (kc.cycles if kc.cycles is not None else kc.instructions) * runs,
               "macs": c.spec.macs * runs}
        rows.append(row)
        totals["cycles"] += row["cycles"]
        totals["instructions"] += row["instructions"]
        if c.stage:
            totals["stage_cycles"] += row["cycles"]
            totals["stage_instructions"] += row["instructions"]
    return {"layers": rows, **{k: round(v) for k, v in totals.items()},
            "metric": model.metric, "board": model.board, "outlier_rate": outlier_rate}
