"""Search entry points: prepare a model (plan + calibration), make any policy, evaluate it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import data, pipeline, quant
from ..patch import NoPlanFitsError, analyze, plan as make_plan, policy_peak
from .baselines import memory_driven, weight_bytes
from .calibrate import StageCalibration, calibrate_stage
from .engine import ENGINES, runner
from ..quant.policy import POLICIES, Policy
from .rl import run_agent
from .simulate import Simulator, evaluate
from .devcost import DeviceCost, policy_profile
from .vdqs import DEFAULT_BITS, DEFAULT_W_BITS, ENTROPY_BYTES, PHIS, VDQS, entropy_image_count

DEFAULT_SRAM_KB = 32
DEFAULT_DROP_PT = 0.5
VAL_IMAGES_AUTO = 2000
LAMBDAS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0)



class SearchError(ValueError):
    """A search that cannot be made as asked (unknown policy or engine, no plan fits)."""


@dataclass
class SearchParams:
    """Every reconstructed choice of the method, with its default."""
    sram_kb: float = DEFAULT_SRAM_KB
    calibration_images: int = 512
    threshold: str = "percentile"          # VDPC T_i: percentile | meanstd | clip
    threshold_pct: float = 99.99
    threshold_k: float = 6.0
    # VDPC classification point: the stage feature map whose per-patch max |x| is compared
    # with T (None: the first feature map computed in the branch)
    classification_map: str | None = None
    range_method: str = "mse"              # low-bit ranges: mse | percentile | minmax
    candidate_bits: tuple = DEFAULT_BITS
    candidate_w_bits: tuple = DEFAULT_W_BITS   # weight widths VDQS may give a stage layer
    # every patch-stage layer's weights at this width, not searched (VDQS then searches the
    # activations; None: weights searched from candidate_w_bits)
    stage_w_bits: int | None = None
    entropy_images: int = 128              # calibration images for Ω (at most; see below)
    entropy_bytes: int = ENTROPY_BYTES     # cut entropy_images so one branch's tensors fit
    phi_norm: str = "stage"                # Φ normalisation: stage | consumer (vdqs.py)
    omega_norm: str = "hb"                 # Ω normalisation: hb | h8 (vdqs.py)
    # Φ: "bitops" (the paper's: BitOPs saved) | "device" (modelled Cortex-M4 cycles of the
    # real kernels saved, activation and weight widths chosen as pairs; devcost.py)
    phi: str = "bitops"
    # memory-aware plans (device Φ): besides the int8 plan, the `extra_plans` plans with the
    # fewest MACs that fit the budget with every patch-stage map at `plan_bits` are searched
    # (without VDPC, whose buffers hold the 8-bit branch) and the fastest policy is kept
    plan_bits: int = 4
    extra_plans: int = 2
    # device Φ without VDPC: search the layer-wise rest's widths too (vdqs.py; our extension)
    vdqs_rest: bool = False
    rest_bits: tuple = (8, 4)              # activation widths of the rest's maps
    rest_w_bits: tuple = (8, 4)            # weight widths of the rest's layers
    drop_pt: float = DEFAULT_DROP_PT       # accuracy-drop bound of the automatic λ
    val_images: int = VAL_IMAGES_AUTO

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["candidate_bits"] = list(self.candidate_bits)
        d["candidate_w_bits"] = list(self.candidate_w_bits)
        d["rest_bits"] = list(self.rest_bits)
        d["rest_w_bits"] = list(self.rest_w_bits)
        return d


@dataclass
class SearchContext:
    name: str
    params: SearchParams
    graph: object
    plan: object
    cal: StageCalibration
    ranges8: dict
    cal_images: np.ndarray
    model_hash: str
    stats: dict = field(default_factory=dict)
    engine: str = "sim"            # how evaluate_policy runs images: sim | c (see engine.py)
    model: object = None           # the ModelRef (pipeline.resolve)
    data: data.DataSource = data.FASHION_MNIST
    _vdqs: dict = field(default_factory=dict)
    _device: DeviceCost | None = None

    @property
    def device(self) -> DeviceCost:
        """The kernel cost model of device Φ (Cortex-M4 modelled cycles, cached on disk)."""
        if self._device is None:
            self._device = DeviceCost()
        return self._device

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.graph.input_shape)

    def samples_all(self, tensor: str) -> np.ndarray:
        if tensor in self.cal.samples_all:
            return self.cal.samples_all[tensor]
        return self.stats[tensor].sample()

    def vdqs(self, vdpc: bool = True) -> VDQS:
        if vdpc not in self._vdqs:
            p = self.params
            n = entropy_image_count(self.plan, p.entropy_images, p.entropy_bytes)
            fixed = {l.name: p.stage_w_bits for l in self.plan.stage_layers
                     if l.weight is not None} if p.stage_w_bits else None
            self._vdqs[vdpc] = VDQS(self.graph, self.plan, self.cal, self.ranges8,
                                    self.cal_images[:n], p.candidate_bits,
                                    p.range_method, w_bits=fixed, vdpc=vdpc, phi_norm=p.phi_norm,
                                    omega_norm=p.omega_norm,
                                    candidate_w_bits=p.candidate_w_bits, phi=p.phi,
                                    device=self.device if p.phi == "device" else None,
                                    budget_bytes=int(p.sram_kb * 1024),
                                    rest=p.vdqs_rest and not vdpc,
                                    samples_of=self.samples_all, rest_bits=p.rest_bits,
                                    rest_w_bits=p.rest_w_bits)
        return self._vdqs[vdpc]

    def base(self, name: str = "int8") -> Policy:
        layerwise = name == "layerwise-int8"
        return Policy(name, self.name, self.model_hash,
                      None if layerwise else self.plan.split_index,
                      None if layerwise else self.plan.grid, self.ranges8,
                      params={"sram_kb": self.params.sram_kb})


def prepare(model, params: SearchParams | None = None, engine: str = "sim",
            data_source: data.DataSource | str | None = None) -> SearchContext:
    """Import, plan for the SRAM budget (a patch plan is always made), calibrate. `model`: a
    zoo name, FILE.pt2, FILE.py:factory or a ModelRef (pipeline.resolve); `data_source`: the
    calibration/evaluation images (default Fashion-MNIST). `engine` is the default
    evaluation engine of the context (results do not depend on it)."""
    p = params or SearchParams()
    imp = pipeline.load(model)
    src = data.source(data_source)
    images = src.split("train").images(imp.input_shape, 0, p.calibration_images)
    stats = pipeline.calibration_stats(imp, p.calibration_images, data_source=src)
    return prepare_graph(imp.graph, images, p, imp.name, imp.model_hash, engine, stats=stats,
                         model=imp.ref, data_source=src)


def prepare_graph(graph, images: np.ndarray, params: SearchParams | None = None,
                  name: str = "model", model_hash: str = "", engine: str = "sim",
                  stats: dict | None = None, model=None,
                  data_source: data.DataSource | None = None,
                  plan=None) -> SearchContext:
    """:func:`prepare` for any layer graph (e.g. ``frontend.from_relax`` of a module TVM's
    importer made) with its calibration images (N×C×H×W floats in [0, 1]); `data_source`:
    where evaluate_policy takes its images (default Fashion-MNIST); `plan`: this patch plan
    instead of the planner's int8 choice for the budget."""
    p = params or SearchParams()
    check_engine(engine)
    if p.phi not in PHIS:
        raise SearchError(f"unknown Φ {p.phi!r}; one of {', '.join(PHIS)}")
    budget = int(p.sram_kb * 1024)
    try:
        chosen = plan or make_plan(graph, budget, allow_layerwise=False).chosen
    except NoPlanFitsError as e:
        raise SearchError(str(e)) from e
    images = images[:p.calibration_images]
    if stats is None:
        stats = quant.observe(graph, images)
    ranges8 = quant.ranges(stats, pipeline.RANGE_METHOD, pipeline.RANGE_PCT)
    try:
        cal = calibrate_stage(chosen, images, p.threshold, p.threshold_pct, p.threshold_k,
                              p.classification_map)
    except ValueError as e:
        raise SearchError(str(e)) from e
    return SearchContext(name, p, graph, chosen, cal, ranges8, images, model_hash, stats,
                         engine, model, data.source(data_source))


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise SearchError(f"unknown evaluation engine {engine!r}; one of {', '.join(ENGINES)}")


def quantmcu_policy(ctx: SearchContext, lam: float, vdpc: bool = True,
                    uniform_bits: int | None = None, cold: bool = False) -> tuple[Policy, float]:
    """(policy, search seconds) for one λ; uniform_bits gives the 'uniform b-bit' ablation.
    cold=True times the search from empty VDQS caches (what one search on its own costs);
    otherwise branch tensors memoised by earlier λs make it look nearly free."""
    v = ctx.vdqs(vdpc)
    res = v.uniform(uniform_bits) if uniform_bits else v.search(lam, cold=cold)
    name = "quantmcu" if vdpc and not uniform_bits else \
        (f"vdpc-uniform{uniform_bits}" if uniform_bits else "vdqs-no-vdpc")
    pol = ctx.base("int8")
    pol.name = name
    pol.vdpc = vdpc
    pol.classification_map = ctx.cal.classification_map if vdpc else None
    pol.threshold = ctx.cal.threshold if vdpc else None
    pol.bits_low = res.bits
    pol.w_bits = {**v.w_bits, **res.w_bits}
    pol.ranges_low = res.ranges
    pol.lam = None if uniform_bits else lam
    pol.params = {**ctx.params.to_json(), "vdqs_table": res.table,
                  "calibration_outlier_rate": ctx.cal.outlier_rate,
                  "vdpc_routing": ctx.cal.routing() if vdpc else None}
    return pol, res.seconds


def evaluate_policy(ctx: SearchContext, pol: Policy, split: str = "test",
                    limit: int | None = None, bar=None, batch: int = 250,
                    engine: str | None = None) -> dict:
    """Top-1, BitOPs, routing statistics and memory of `pol` on `split`. engine: "sim" (numpy
    integer simulator) or "c" (the policy's generated C on the host, bit-exact and faster on
    many images, but it costs one C build); default: the context's."""
    engine = engine or ctx.engine
    check_engine(engine)
    ds = ctx.data.split(split)
    sim = Simulator(ctx.graph, pol, plan_of(ctx, pol))
    res = evaluate(runner(sim, engine), ds.batches(ctx.input_shape, batch, limit), bar)
    res["engine"] = engine
    res["peak_sram_bytes"] = peak_sram(ctx, pol)
    res["flash_bytes"] = weight_bytes(ctx.graph, pol)
    return res


def int8_bitops(ctx: SearchContext) -> tuple[float, float]:
    """(patch-stage, total) BitOPs of the MCUNetV2 int8 baseline (no routing: fixed)."""
    sim = Simulator(ctx.graph, ctx.base("int8"), ctx.plan)
    return float(sim.bitops_stage8.sum()), float(sim.bitops_stage8.sum() + sim.bitops_rest)


def peak_sram(ctx: SearchContext, pol: Policy) -> int:
    """The arena of the policy's program (what its firmware links)."""
    return policy_peak(ctx.graph, pol)


def sweep_lambdas(ctx: SearchContext, measure, lambdas=LAMBDAS, cold: bool = False,
                  vdpc: bool = True) -> list[dict]:
    """One row per λ: ``measure(policy, search_seconds)`` → dict, called once per distinct
    bit assignment (several λ often give the same policy); each row adds λ and the seconds
    of that λ's search (cold: each from empty caches, see quantmcu_policy)."""
    seen: dict = {}
    rows = []
    for lam in lambdas:
        pol, secs = quantmcu_policy(ctx, lam, vdpc=vdpc, cold=cold)
        key = (tuple(sorted(pol.bits_low.items())), tuple(sorted(pol.w_bits.items())))
        if key not in seen:
            seen[key] = measure(pol, secs)
        rows.append(dict(seen[key], **{"lambda": lam, "bits": pol.bits_low,
                                       "w_bits": pol.w_bits,
                                       "search_seconds": round(secs, 3)}))
    return rows


def mark_pareto(rows: list[dict], key: str = "bitops_patch_stage") -> None:
    """pareto = no other row has fewer BitOPs at equal or better top-1."""
    for r in rows:
        r["pareto"] = not any(o[key] < r[key] and o["top1"] >= r["top1"] for o in rows)


def lambda_front(ctx: SearchContext, lambdas=LAMBDAS, split: str = "val",
                 limit: int | None = None, bar=None, vdpc: bool = True) -> list[dict]:
    """Every λ's policy with accuracy, BitOPs and the Pareto flag."""
    def measure(pol, secs):
        r = evaluate_policy(ctx, pol, split, limit, bar)
        row = {k: r[k] for k in ("top1", "bitops_patch_stage", "bitops_total",
                                 "outlier_patch_rate")}
        if ctx.params.phi == "device":
            row["device_cycles"] = device_cost(ctx, pol, r["outlier_patch_rate"])["cycles"]
        return row
    rows = sweep_lambdas(ctx, measure, lambdas, vdpc=vdpc)
    mark_pareto(rows, front_key(ctx))
    return rows


def front_key(ctx: SearchContext) -> str:
    """What the λ front and the automatic λ minimise: patch-stage BitOPs, or the modelled
    device cycles per inference under device Φ."""
    return "device_cycles" if ctx.params.phi == "device" else "bitops_patch_stage"


def device_cost(ctx: SearchContext, pol: Policy, outlier_rate: float = 0.0) -> dict:
    """Modelled kernel cost per inference of `pol` (devcost.policy_profile): per layer and in
    total, cycles and instructions."""
    return policy_profile(ctx.graph, pol, ctx.device, outlier_rate, plan_of(ctx, pol))


def speedup_vs_int8(graph, pol: Policy, outlier_rate: float = 0.0,
                    device: DeviceCost | None = None, layers: bool = False) -> dict:
    """Modelled kernel cost per inference of `pol` and of int8 patches (MCUNetV2: the
    planner's int8 plan for the budget the policy was searched for), and their ratio;
    layers=True adds both per-layer profiles ("profile", "int8_profile")."""
    device = device or DeviceCost()
    kb = (pol.params or {}).get("sram_kb", DEFAULT_SRAM_KB)
    try:
        plan8 = make_plan(graph, int(float(kb) * 1024), allow_layerwise=False).chosen
    except NoPlanFitsError:
        return {"sram_kb": kb, "int8_fits": False}
    int8 = Policy("int8", pol.model, pol.model_hash, plan8.split_index, plan8.grid,
                  pol.ranges8)
    mine = policy_profile(graph, pol, device, outlier_rate)
    base = policy_profile(graph, int8, device, 0.0, plan8)
    return {"sram_kb": kb, "int8_fits": True, "int8_plan": [plan8.split_layer,
                                                             list(plan8.grid)],
            "cycles": mine["cycles"], "instructions": mine["instructions"],
            "int8_cycles": base["cycles"], "int8_instructions": base["instructions"],
            "speedup_cycles": base["cycles"] / mine["cycles"],
            "speedup_instructions": base["instructions"] / mine["instructions"],
            **({"profile": mine, "int8_profile": base} if layers else {})}


def plan_of(ctx: SearchContext, pol: Policy):
    """The context's plan when `pol` uses it (None: layer by layer, or another plan, which
    the simulator analyses itself)."""
    same = pol.split_index == ctx.plan.split_index and tuple(pol.grid or ()) == \
        tuple(ctx.plan.grid)
    return ctx.plan if same else None


def with_plan(ctx: SearchContext, plan) -> SearchContext:
    """The same model, images and 8-bit ranges, calibrated for another patch plan."""
    return prepare_graph(ctx.graph, ctx.cal_images, ctx.params, ctx.name, ctx.model_hash,
                         ctx.engine, ctx.stats, ctx.model, ctx.data, plan=plan)


def low_bit_plans(graph, plan_bits: int) -> list:
    """Every split and grid with every patch-stage map (but the stage output) at plan_bits:
    the plans, with their peaks, that memory-aware plans are chosen from."""
    from ..patch import enumerate_plans, split_candidates
    out = []
    for n in split_candidates(graph):
        bits = {l.output: plan_bits for l in graph.layers[:n]}
        out += enumerate_plans(graph, bits=bits, splits=[n])
    return out


def memory_aware_plans(ctx: SearchContext) -> list:
    """Plans other than the int8 one that fit the budget with every patch-stage map (but the
    stage output) at plan_bits: the extra_plans with the fewest MACs."""
    p, g = ctx.params, ctx.graph
    budget = int(p.sram_kb * 1024)
    fits = [c for c in low_bit_plans(g, p.plan_bits) if c.peak_sram_patch_bytes <= budget
            and (c.split_index, c.grid) != (ctx.plan.split_index, ctx.plan.grid)]
    fits.sort(key=lambda c: (c.macs_total, c.grid[0] * c.grid[1], c.split_index))
    # one of plans alike in cost (a p×q grid and its q×p transpose): the first
    seen, distinct = set(), []
    for c in fits:
        if (c.split_index, c.macs_total) not in seen:
            seen.add((c.split_index, c.macs_total))
            distinct.append(c)
    return [analyze(g, c.split_index, c.grid) for c in distinct[:p.extra_plans]]


def device_quantmcu(ctx: SearchContext, bar=None) -> tuple[Policy, dict]:
    """QuantMCU under device Φ with memory-aware plans: VDQS with VDPC on the int8 plan, and
    without VDPC on it and on the memory-aware plans (whose low-bit buffers fit where 8-bit
    ones do not); each with its automatic λ, the policy with the fewest modelled cycles per
    inference whose validation top-1 is within drop_pt of int8 (else the most accurate)."""
    p = ctx.params
    t0 = time.time()
    tried = []
    budget = int(p.sram_kb * 1024)
    # VDPC's buffers hold the 8-bit branch: below the int8 plan's peak it cannot fit
    vdpc_fits = peak_sram(ctx, ctx.base("int8")) <= budget
    low = min(p.candidate_bits)
    candidates = [(ctx.plan, True)] * vdpc_fits + [
        (pl, False) for pl in [ctx.plan] + memory_aware_plans(ctx)
        # without VDPC, a plan whose peak is over the budget at the lowest widths cannot fit
        if analyze(ctx.graph, pl.split_index, pl.grid, {
            l.output: low for l in pl.stage_layers if l.output != pl.stage_output}
        ).peak_sram_patch_bytes <= budget]
    if not candidates:
        raise SearchError(f"quantmcu: no plan of {ctx.name} fits {budget:,} B, with VDPC or "
                          f"with every patch-stage map at {low} bits")
    for i, (plan, vdpc) in enumerate(candidates):
        if bar is not None:
            bar.set_description(f"search quantmcu: plan {i + 1}/{len(candidates)} "
                                f"({plan.split_layer} {plan.grid[0]}x{plan.grid[1]}, "
                                f"{'with' if vdpc else 'no'} VDPC)")
        c = ctx if plan is ctx.plan else with_plan(ctx, plan)
        lam, front, base = auto_lambda(c, bar, vdpc=vdpc)
        row = next(r for r in front if r["lambda"] == lam)
        fits = peak_sram(c, quantmcu_policy(c, lam, vdpc=vdpc)[0]) <= budget
        tried.append({"split_layer": c.plan.split_layer, "grid": list(c.plan.grid),
                      "vdpc": vdpc, "lambda": lam, "top1_val": row["top1"],
                      "device_cycles": row["device_cycles"], "fits": fits, "ctx": c,
                      "front": front, "base": base})
    # a policy over the budget is chosen only when none fits
    pool = [t for t in tried if t["fits"]] or tried
    ok = [t for t in pool if t["top1_val"] >= t["base"] - p.drop_pt / 100]
    best = min(ok, key=lambda t: t["device_cycles"]) if ok else \
        max(pool, key=lambda t: t["top1_val"])
    pol, secs = quantmcu_policy(best["ctx"], best["lambda"], vdpc=best["vdpc"], cold=True)
    pol.name = "quantmcu"
    pol.params["candidates"] = [{k: v for k, v in t.items() if k not in ("ctx", "front",
                                                                          "base")}
                                for t in tried]
    return pol, {"lambda_front_val": best["front"], "int8_val_top1": best["base"],
                 "auto_lambda_seconds": round(time.time() - t0, 2),
                 "search_seconds": round(secs, 3), "candidates": pol.params["candidates"]}


def auto_lambda(ctx: SearchContext, bar=None,
                vdpc: bool = True) -> tuple[float, list[dict], float]:
    """The λ whose policy has the fewest patch-stage BitOPs (device Φ: modelled device cycles
    per inference) with validation top-1 at most
    drop_pt below the int8 baseline's. Returns (λ, the front on the validation split,
    int8 validation top-1)."""
    p = ctx.params
    base = evaluate_policy(ctx, ctx.base("int8"), "val", p.val_images, bar)["top1"]
    front = lambda_front(ctx, LAMBDAS, "val", p.val_images, bar, vdpc=vdpc)
    ok = [r for r in front if r["top1"] >= base - p.drop_pt / 100]
    key = front_key(ctx)
    best = min(ok, key=lambda r: (r[key], -r["top1"], -r["lambda"])) \
        if ok else max(front, key=lambda r: r["lambda"])
    return best["lambda"], front, base


def rl_policy(ctx: SearchContext, episodes: int = 40, seconds: float = 120.0,
              val_images: int = 300, seed: int = 0, progress=None) -> tuple[Policy, dict]:
    """The HAQ-style agent over the patch-stage maps (no routing), reward on validation."""
    v = ctx.vdqs(vdpc=False)
    base_pol = ctx.base("int8")
    # a few hundred images per episode: simulating them is cheaper than building C each time
    base = evaluate_policy(ctx, base_pol, "val", val_images, engine="sim")
    maps = v.maps
    macs = np.array([max(v.saving_per_bit[m], 1) for m in maps], np.float64)
    sizes = np.array([np.prod(ctx.graph.shapes[m]) for m in maps], np.float64)
    budget = int(ctx.params.sram_kb * 1024)

    def state_of(i, prev):
        return [i / len(maps), np.log2(macs[i]) / 30, np.log2(sizes[i]) / 20, prev]

    def make(bits):
        pol = ctx.base("int8")
        pol.name = "rl"
        pol.bits_low = {m: b for m, b in bits.items() if b != 8}
        pol.ranges_low = {m: v.low_ranges[(m, b)] for m, b in bits.items()}
        return pol

    def evaluate_bits(bits):
        r = evaluate_policy(ctx, make(bits), "val", val_images, engine="sim")
        drop = 100 * (base["top1"] - r["top1"])
        saving = 100 * (1 - r["bitops_patch_stage"] / base["bitops_patch_stage"])
        return drop, saving

    def budget_ok(bits):
        return peak_sram(ctx, make(bits)) <= budget

    res = run_agent(maps, state_of, evaluate_bits, budget_ok, episodes, seconds, seed,
                    progress=progress)
    pol = make({**{m: 8 for m in maps}, **res.bits})
    pol.params.update({"episodes": res.episodes, "reward": res.reward,
                       "val_images": val_images, "history": res.history})
    return pol, {"search_seconds": res.seconds}


def make_policy(ctx: SearchContext, name: str, lam: float | str | None = None,
                flash_kb: float | None = None, ram_kb: float | None = None,
                rl_seconds: float = 120.0, bar=None) -> tuple[Policy, dict]:
    """Any policy by name; returns (policy, extra info incl. search_seconds)."""
    if name not in POLICIES:
        raise SearchError(f"unknown policy {name!r}; one of {', '.join(POLICIES)}")
    t0 = time.time()
    if name in ("int8", "layerwise-int8"):
        return ctx.base(name), {"search_seconds": 0.0}
    if name == "quantmcu" and ctx.params.phi == "device" and lam in (None, "auto"):
        return device_quantmcu(ctx, bar)
    if name == "quantmcu":
        info = {}
        if lam is None or lam == "auto":
            lam, front, base = auto_lambda(ctx, bar)
            info.update({"lambda_front_val": front, "int8_val_top1": base,
                         "auto_lambda_seconds": round(time.time() - t0, 2)})
        pol, secs = quantmcu_policy(ctx, float(lam), cold=True)
        info["search_seconds"] = round(secs, 3)
        return pol, info
    if name == "memory-driven":
        ram = int((ram_kb if ram_kb is not None else ctx.params.sram_kb / 2) * 1024)
        flash = None if flash_kb is None else int(flash_kb * 1024)
        pol = memory_driven(ctx, ctx.base("int8"), ram, flash, ctx.params.range_method)
        pol.params["sram_kb"] = ctx.params.sram_kb       # the plan's budget, as every policy
        return pol, {"search_seconds": round(time.time() - t0, 3)}
    pol, info = rl_policy(ctx, seconds=rl_seconds)
    return pol, info
