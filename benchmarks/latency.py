"""Latency against the SRAM budget: every policy searched for each budget, deployed on qemu-m4
and timed, side by side in one run.

    python benchmarks/latency.py [--models mbv2-fmnist mcunet-fmnist] [--budgets 6]
        [--budgets-kb KB ...] [--images 200] [--test-images 10000] [--work DIR] [--quick]

Budgets (whole KB): `--budgets` budgets at which the int8 patch plan changes, from the smallest
at which int8 patches fit (the smallest patch-plan peak at 8 bits) up to the layer-wise int8
peak, always with both ends and the model's default budget, plus one budget below the int8
minimum (unless `--no-below`: there only a policy with lower-bit buffers can fit; the smallest
at which a plan with its patch-stage maps at the memory-aware plans' width fits). The budgets
the #16 targets are about run first. Per budget, each policy is made (searched) for that
budget and, when its planned peak fits, deployed through `quantmcu deploy`'s pipeline on
qemu-m4: instructions (QEMU -icount) and modelled Cortex-M4 cycles (QEMU plugin) per inference,
mean over `--images` images; peak SRAM is the arena read from the linked firmware (nm); top-1
and the outlier rate over `--test-images` test images through the policy's generated C on the
host (bit-exact with the integer reference, the device's routing included).

Policies: layer-wise int8, int8 patches (MCUNetV2), QuantMCU with the BitOPs Φ, QuantMCU with
the device-cost Φ (when the search offers `SearchParams.phi`), QuantMCU without VDPC (the
ablation: the BitOPs-Φ VDQS at the same λ, no outlier routing), memory-driven (Rusci et al., RAM
budget = the SRAM budget) and the RL agent. A policy that does not fit a budget, or that this
search cannot make, is a row that says why.

Every searched policy and every measurement is cached in the work directory (default
benchmarks/.latency-work): a rerun, or a run interrupted and started again, measures only
what is missing; equal policies (e.g. int8 patches at budgets with the same plan) are measured
once. Writes benchmarks/results/latency.json, latency.md and latency.png after every budget.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import subprocess
import tempfile
import time
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from deploy import deploy as deploy_with_retry  # noqa: E402  (benchmarks/deploy.py)
from micro_project.client import LinkError  # noqa: E402
from tvm_quantmcu import pipeline, search  # noqa: E402
from tvm_quantmcu.models.policies import SRAM_KB  # noqa: E402
from tvm_quantmcu.patch import enumerate_plans, layerwise_peak  # noqa: E402
from tvm_quantmcu.quant.policy import Policy  # noqa: E402
from tvm_quantmcu.report.latency import BUDGET_POLICIES as POLICIES  # noqa: E402
from tvm_quantmcu.report.latency import plot_latency_vs_budget  # noqa: E402
from tvm_quantmcu.search.baselines import BudgetError  # noqa: E402

RESULTS = os.path.join(HERE, "results")
WORK = os.path.join(HERE, ".latency-work")
BOARD = "qemu-m4"
# (key, label) in table order: POLICIES
LABELS = dict(POLICIES)
NOT_RUN = "not measured in this run (--cached-only: no search or measurement cached)"
NOT_MERGED = "not measured in the runs merged here"
# the QuantMCU policy the VDPC ablation removes the routing from (same λ and Φ)
ABLATED = "quantmcu-bitops"
# #16's latency targets: (model, which budget, needed int8 ÷ QuantMCU, accuracy bound pt)
TARGETS = (("mbv2-fmnist", "smallest", 1.4, 0.5), ("mbv2-fmnist", 32, 1.15, 0.5),
           ("mcunet-fmnist", "smallest", 1.3, 0.5))
BITOPS_TARGET = 2.2


def has_device_phi() -> bool:
    return "phi" in {f.name for f in dataclasses.fields(search.SearchParams)}


def with_phi(ctx, phi: str):
    """The context searching with Φ = `phi` (same plan and calibration), or None when the
    search has no choice of Φ and `phi` is not its only one (BitOPs)."""
    if not has_device_phi():
        return ctx if phi == "bitops" else None
    return dataclasses.replace(ctx, params=dataclasses.replace(ctx.params, phi=phi), _vdqs={})


# ---------------------------------------------------------------- budgets

def _rank(plan) -> tuple:
    """The planner's choice among fitting plans (patch.planner: least MACs, then peak)."""
    return (plan.macs_total, plan.peak_sram_patch_bytes, plan.grid[0] * plan.grid[1],
            plan.split_index)


class Budgets:
    """The int8 patch plans of a model: the one chosen at each budget, and where it changes."""

    def __init__(self, graph):
        self.plans = enumerate_plans(graph)
        self.int8_min = min(p.peak_sram_patch_bytes for p in self.plans)
        # the smallest peak of a plan whose patch-stage maps are at the memory-aware plans'
        # width: where a policy with lower-bit buffers can fit and int8 patches cannot
        self.low_bit_min = min(p.peak_sram_patch_bytes for p in search.api.low_bit_plans(
            graph, search.SearchParams().plan_bits))
        self.layerwise = layerwise_peak(graph, 8)
        self.min_kb, self.max_kb = math.ceil(self.int8_min / 1024), math.ceil(self.layerwise / 1024)

    def chosen(self, kb: int):
        """The plan the planner takes at `kb` (the smallest-peak plan below the minimum)."""
        fit = [p for p in self.plans if p.peak_sram_patch_bytes <= kb * 1024]
        if not fit:
            return min(self.plans, key=lambda p: (p.peak_sram_patch_bytes, p.macs_total))
        return min(fit, key=_rank)

    def breakpoints(self) -> list[int]:
        """Whole-KB budgets at which the chosen plan changes, and the layer-wise peak."""
        out, last = [], None
        for kb in range(self.min_kb, self.max_kb + 1):
            c = self.chosen(kb)
            if (c.split_index, c.grid) != last:
                out.append(kb)
                last = (c.split_index, c.grid)
        return sorted(set(out) | {self.max_kb})

    def pick(self, n: int, default_kb: float | None, below: bool) -> list[int]:
        """n budgets where the plan changes, from the int8 minimum to the layer-wise peak
        (both ends and the model's default budget kept, the rest spread evenly), plus one
        below the minimum: the smallest at which a plan with lower-bit patch-stage maps fits
        (else 85% of the minimum)."""
        bp = self.breakpoints()
        keep = {bp[0], bp[-1]}
        if default_kb is not None and self.min_kb <= default_kb <= self.max_kb:
            keep.add(int(default_kb))
        rest = [k for k in bp if k not in keep]
        want = max(0, n - len(keep))
        if rest and want:
            step = len(rest) / min(want, len(rest))
            keep |= {rest[int(i * step)] for i in range(min(want, len(rest)))}
        if below:
            low = math.ceil(getattr(self, "low_bit_min", self.int8_min) / 1024)
            keep.add(low if low < self.min_kb else
                     max(1, math.floor(0.85 * self.int8_min / 1024)))
        return sorted(keep)

    def slot(self, kb: int) -> str:
        """Cache slot of a budget's policies: at or above the int8 minimum a policy depends on
        the plan only (every width fits, so the RL agent's and memory-driven's budget never
        binds); below it, on the budget."""
        c = self.chosen(kb)
        plan = f"{c.split_index}_{c.grid[0]}x{c.grid[1]}"
        return plan if kb >= self.min_kb else f"{plan}_{kb}KB"


# ---------------------------------------------------------------- cache

def content_key(pol: Policy) -> str:
    """What a policy computes (not its name, λ or notes): equal keys, equal measurements."""
    d = pol.to_json()
    for k in ("name", "lam", "params"):
        d.pop(k)
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


class Work:
    """Searched policies and measurements on disk, so runs resume and repeat nothing."""

    def __init__(self, root: str, model: str):
        self.root = os.path.join(root, model)
        os.makedirs(os.path.join(self.root, "measured"), exist_ok=True)

    def policy_path(self, slot: str, key: str) -> str:
        os.makedirs(os.path.join(self.root, slot), exist_ok=True)
        return os.path.join(self.root, slot, f"{key}.json")

    def load_made(self, slot: str, key: str):
        """(policy or None, info) of an earlier search, or None when not searched yet."""
        p = self.policy_path(slot, key) + ".info"
        if not os.path.exists(p):
            return None
        with open(p) as f:
            info = json.load(f)
        pol = None
        if info.get("made"):
            with open(self.policy_path(slot, key)) as f:
                pol = Policy.from_json(json.load(f))
        return pol, info

    def save_made(self, slot: str, key: str, pol, info: dict) -> None:
        if pol is not None:
            pol.save(self.policy_path(slot, key))
        write_json(self.policy_path(slot, key) + ".info", dict(info, made=pol is not None))

    def measured(self, digest: str, images: int, test_images: int) -> dict | None:
        p = os.path.join(self.root, "measured", f"{digest}.{images}.{test_images}.json")
        if os.path.exists(p):
            with open(p) as f:
                return json.load(f)
        return None

    def save_measured(self, digest: str, images: int, test_images: int, m: dict) -> None:
        write_json(os.path.join(self.root, "measured", f"{digest}.{images}.{test_images}.json"),
                   m)


def write_json(path: str, doc) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist")
                  else str(o))
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------- policies

class Budget:
    """One (model, budget): the search context, made on first use (planning and calibration
    cost tens of seconds; a budget whose policies are all cached needs none)."""

    def __init__(self, model: str, graph, kb: int, budgets: Budgets, args, log):
        self.model, self.graph, self.kb, self.args, self.log = model, graph, kb, args, log
        self.bytes = kb * 1024
        self.slot = budgets.slot(kb)
        # below the int8 minimum, the smallest-peak int8 plan is the starting point: a policy
        # fits only with lower-bit buffers
        self.plan_kb = max(kb, budgets.min_kb)
        self._ctx = None
        self.made: dict = {}         # key → (policy or None, info) made so far

    def ctx(self):
        if self._ctx is None:
            t = time.time()
            params = search.SearchParams(sram_kb=self.plan_kb, val_images=self.args.val_images)
            ctx = search.prepare(self.model, params, engine="c")
            if self.plan_kb != self.kb:
                ctx = dataclasses.replace(ctx, params=dataclasses.replace(params,
                                                                          sram_kb=self.kb))
            self._ctx = ctx
            self.log(f"  prepared {self.kb} KB: split after {ctx.plan.split_layer}, grid "
                     f"{ctx.plan.grid[0]}x{ctx.plan.grid[1]} ({time.time() - t:.0f} s)")
        return self._ctx


def make(b: Budget, key: str, made: dict):
    """(policy or None, info) for one policy key at one budget; None with info['reason'] when
    this search cannot make it. `made` holds the budget's earlier results (the ablation takes
    the λ of the main QuantMCU policy)."""
    t0 = time.time()
    ctx = b.ctx()
    if key in ("int8", "layerwise-int8"):
        pol = ctx.base(key)
        pol.params["sram_kb"] = b.kb
        return pol, {}
    if key in ("quantmcu-bitops", "quantmcu-device"):
        phi = key.split("-")[1]
        need = search.api.peak_sram(ctx, ctx.base("int8"))
        # VDPC's 8-bit branch needs the int8 buffers, unless the search plans memory-aware
        if need > b.bytes and not hasattr(search.api, "memory_aware_plans"):
            return None, {"reason": f"the 8-bit (outlier) branch of the smallest plan needs "
                                    f"{need:,} B, {need - b.bytes:,} B over the budget"}
        c = with_phi(ctx, phi)
        if c is None:
            return None, {"reason": f"the search has no Φ = {phi} (SearchParams.phi)"}
        b.log(f"  {key}: automatic λ on {b.args.val_images} validation images")
        pol, info = search.make_policy(c, "quantmcu", "auto")
        pol.name = key
        return pol, {"lambda": pol.lam, "phi": phi, "search_seconds": info["search_seconds"],
                     "auto_lambda_seconds": info.get("auto_lambda_seconds")}
    if key == "quantmcu-no-vdpc":
        main = ABLATED
        if made.get(main, (None,))[0] is None:
            return None, {"reason": f"no {LABELS[main]} policy at this budget to ablate"}
        phi = main.split("-")[1]
        lam = made[main][0].lam
        pol, secs = search.quantmcu_policy(with_phi(ctx, phi), lam, vdpc=False, cold=True)
        pol.name = key
        return pol, {"lambda": lam, "phi": phi, "ablates": main, "search_seconds": secs}
    if key == "memory-driven":
        try:
            pol, info = search.make_policy(ctx, "memory-driven", ram_kb=b.kb)
        except BudgetError as e:
            return None, {"reason": str(e)}
        pol.params["sram_kb"] = b.kb
        return pol, {"search_seconds": info["search_seconds"]}
    if key == "rl":
        b.log(f"  rl: agent for up to {b.args.rl_seconds:g} s")
        pol, info = search.make_policy(ctx, "rl", rl_seconds=b.args.rl_seconds)
        pol.params["sram_kb"] = b.kb
        return pol, {"search_seconds": round(time.time() - t0, 1)}
    raise ValueError(f"unknown policy key {key!r}")


# ---------------------------------------------------------------- measuring

def measure(b: Budget, pol: Policy, work: Work, tmp: str) -> dict:
    """Top-1 on the test set through the host C, and the qemu-m4 deployment."""
    args = b.args
    ctx = b.ctx()
    t = time.time()
    ev_path = os.path.join(work.root, "measured",
                           f"{content_key(pol)}.eval{args.test_images}.json")
    if os.path.exists(ev_path):         # a deployment that failed after its evaluation
        with open(ev_path) as f:
            ev = json.load(f)
    else:
        ev = search.evaluate_policy(ctx, pol, "test", args.test_images, engine="c")
        write_json(ev_path, {k: ev[k] for k in ("top1", "images", "outlier_patch_rate",
                                                "bitops_patch_stage", "bitops_total")})
    stage = ev["bitops_patch_stage"]
    if pol.split_index is None:        # layer by layer: the same stage layers, no halo
        stage = float(sum(ctx.graph.macs(l) * 64 for l in ctx.plan.stage_layers))
    b.log(f"    top-1 {ev['top1']:.4f} on {ev['images']} images (host C, "
          f"{time.time() - t:.0f} s); deploying on {BOARD}")
    path = os.path.join(tmp, f"{content_key(pol)}.policy.json")
    pol.save(path)
    t = time.time()
    dep = deploy_with_retry(b.model, BOARD, pol.name, args.images,
                            os.path.join(tmp, content_key(pol)), policy_file=path)
    return {"top1": ev["top1"], "test_images": ev["images"],
            "outlier_patch_rate": ev["outlier_patch_rate"], "bitops_patch_stage": stage,
            "bitops_total": ev["bitops_total"],
            "instructions_per_inference": dep["instructions_per_inference"],
            "cycles_per_inference": dep.get("cycles_per_inference"),
            "instructions_min_max": dep.get("instructions_min_max"),
            "images": dep["images"], "match_rate": dep["match_rate"],
            "device_top1": dep["device_top1"],
            "device_outlier_patch_rate": dep["outlier_patch_rate"],
            "peak_sram_bytes": dep["arena_bytes_linked"],
            "arena_bytes": dep["arena_bytes"],
            "predicted_peak_sram_bytes": dep["predicted_peak_sram_bytes"],
            "flash_bytes": dep["flash_bytes"], "model_hash": dep["model_hash"],
            "deploy_seconds": round(time.time() - t, 1),
            "session_seconds": dep["link"]["session_seconds"], "commit": commit()}


def commit() -> str:
    """The tree measured: HEAD, with '+changes' when the work tree differs from it."""
    def git(*a):
        return subprocess.run(["git", "-C", HERE, *a], capture_output=True, text=True).stdout
    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "..").strip()
    return head + ("+changes" if dirty else "")


def policy_row(b: Budget, key: str, pol, info: dict, work: Work, tmp: str) -> dict:
    row = {"model": b.model, "budget_kb": b.kb, "budget_bytes": b.bytes, "policy": key,
           "label": LABELS[key], "fits": False, "reason": info.get("reason"),
           **{k: info.get(k) for k in ("lambda", "phi", "search_seconds",
                                       "auto_lambda_seconds", "ablates", "source")}}
    if pol is None:
        if info.get("not_run"):
            row["fits"] = None           # unknown: neither made nor measured
        return row
    row.update({"plan": {"split_layer": b.graph.layers[pol.split_index].name
                         if pol.split_index is not None else None,
                         "grid": list(pol.grid) if pol.grid else None},
                "bits": pol.bits_low, "w_bits": pol.w_bits})
    # the planner's peak of the policy (needs the graph only: no calibration)
    predicted = search.api.peak_sram(SimpleNamespace(graph=b.graph), pol)
    row["planned_peak_sram_bytes"] = predicted
    if predicted > b.bytes:
        row["reason"] = (f"planned peak {predicted:,} B exceeds the budget by "
                         f"{predicted - b.bytes:,} B")
        return row
    digest = content_key(pol)
    row["policy_digest"] = digest
    m = work.measured(digest, b.args.images, b.args.test_images)
    if m is None and b.args.cached_only:
        row["reason"], row["fits"] = NOT_RUN, None
        return row
    if m is None:
        try:
            m = measure(b, pol, work, tmp)
        except LinkError as e:         # after benchmarks/deploy.py's retry: not cached
            row["reason"] = f"not measured: the QEMU link failed twice ({e})"
            row["fits"] = None
            return row
        work.save_measured(digest, b.args.images, b.args.test_images, m)
    else:
        b.log(f"    measured before (policy {digest})")
    row.update(m)
    row["policy_digest"] = digest
    row["fits"] = m["peak_sram_bytes"] <= b.bytes
    if not row["fits"]:
        row["reason"] = (f"the firmware's arena is {m['peak_sram_bytes']:,} B, "
                         f"{m['peak_sram_bytes'] - b.bytes:,} B over the budget")
    return row


def bench_budget(b: Budget, lw_peak: int, work: Work, tmp: str, keys: list[str]) -> list[dict]:
    rows, made = [], b.made
    if ABLATED not in made and work.load_made(b.slot, ABLATED) is not None:
        made[ABLATED] = work.load_made(b.slot, ABLATED)     # searched by an earlier run
    for key in keys:
        t = time.time()
        if key == "layerwise-int8" and lw_peak > b.bytes:
            rows.append({"model": b.model, "budget_kb": b.kb, "budget_bytes": b.bytes,
                         "policy": key, "label": LABELS[key], "fits": False,
                         "planned_peak_sram_bytes": lw_peak,
                         "reason": f"layer-wise int8 peak {lw_peak:,} B exceeds the budget by "
                                   f"{lw_peak - b.bytes:,} B"})
            continue
        cached = work.load_made(b.slot, key)
        if cached is None and b.args.cached_only:
            pol, info = None, {"reason": NOT_RUN, "not_run": True}
        elif cached is None:
            pol, info = make(b, key, made)
            work.save_made(b.slot, key, pol, info)
        else:
            pol, info = cached
        made[key] = (pol, info)
        row = policy_row(b, key, pol, info, work, tmp)
        rows.append(row)
        b.log(f"  {b.kb} KB {key:<17} " + (
            f"{row['instructions_per_inference']:,} instr, {row.get('cycles_per_inference')} "
            f"cycles, top-1 {row['top1']:.4f}, arena {row['peak_sram_bytes']:,} B"
            if row.get("instructions_per_inference") else f"– {row['reason']}")
            + f" ({time.time() - t:.0f} s)")
    return rows


def bench_model(model: str, args, work_root: str, tmp: str, done, log) -> dict:
    imp = pipeline.load(model)
    bud = Budgets(imp.graph)
    lo, hi = bud.int8_min, bud.layerwise
    kbs = args.budgets_kb or bud.pick(args.budgets, SRAM_KB.get(model), args.below)
    log(f"{model}: int8 patches fit from {lo:,} B, layer-wise int8 peak {hi:,} B; budgets "
        f"{', '.join(map(str, kbs))} KB")
    work = Work(work_root, model)
    keys = list(dict.fromkeys(args.policies))     # in the order asked for
    res = {"model": model, "int8_min_peak_bytes": lo, "layerwise_peak_bytes": hi,
           "budgets_kb": kbs, "rows": []}
    # the budgets the targets are about first, so a run cut short has them
    first = (bud.min_kb, SRAM_KB.get(model), bud.max_kb)
    order = [Budget(model, imp.graph, kb, bud, args, log)
             for kb in sorted(kbs, key=lambda k: (k not in first, k))]
    # budget by budget, or (--policy-major) each policy at every budget before the next
    steps = [(b, [k]) for k in keys for b in order] if args.policy_major else \
        [(b, keys) for b in order]
    for b, ks in steps:
        t = time.time()
        log(f"{model} @ {b.kb} KB: {', '.join(ks)}")
        res["rows"] += bench_budget(b, hi, work, tmp, ks)
        log(f"{model} @ {b.kb} KB done in {time.time() - t:.0f} s")
        done(res)
    return res


# ---------------------------------------------------------------- summaries

def smallest_fits(m: dict) -> dict[str, int | None]:
    out = {}
    for key, _ in POLICIES:
        kbs = [r["budget_kb"] for r in m["rows"] if r["policy"] == key and r["fits"]]
        out[key] = min(kbs) if kbs else None
    return out


def main_quantmcu(rows: list[dict]) -> dict | None:
    """The QuantMCU row the targets are about: device Φ when it was measured, else BitOPs."""
    by = {r["policy"]: r for r in rows}
    for k in ("quantmcu-device", "quantmcu-bitops"):
        if by.get(k, {}).get("fits"):
            return by[k]
    return None


def ratio(a, b):
    return a / b if a and b else None


def targets(models: list[dict]) -> list[dict]:
    """#16 acceptance 1–3: measured against needed, with the gap where missed."""
    out = []
    for model, where, need, drop in TARGETS:
        m = next((m for m in models if m["model"] == model), None)
        if m is None:
            continue
        kb = math.ceil(m["int8_min_peak_bytes"] / 1024) if where == "smallest" else where
        rows = [r for r in m["rows"] if r["budget_kb"] == kb]
        i8 = next((r for r in rows if r["policy"] == "int8" and r["fits"]), None)
        q = main_quantmcu(rows)
        t = {"model": model, "budget_kb": kb, "budget": where, "needed_speedup": need,
             "drop_bound_pt": drop, "policy": q and q["policy"]}
        if i8 and q:
            t["cycles_speedup"] = ratio(i8.get("cycles_per_inference"),
                                        q.get("cycles_per_inference"))
            t["instructions_speedup"] = ratio(i8["instructions_per_inference"],
                                              q["instructions_per_inference"])
            t["drop_pt"] = round(100 * (i8["top1"] - q["top1"]), 2)
            both = [x for x in (t["cycles_speedup"], t["instructions_speedup"]) if x]
            t["met"] = bool(both) and min(both) >= need and t["drop_pt"] <= drop
            t["missed_by"] = None if t["met"] else {
                "speedup": round(max(0.0, need - min(both)), 3) if both else None,
                "accuracy_pt": round(max(0.0, t["drop_pt"] - drop), 2)}
        else:
            t["met"] = None
            t["missing"] = ("not measured: no int8-patch or QuantMCU row measured at this "
                            "budget" if kb in m["budgets_kb"] else "budget not run")
        out.append(t)
    for m in models:
        for key in ("quantmcu-bitops", "quantmcu-device", "quantmcu-no-vdpc"):
            best = None
            for kb in m["budgets_kb"]:
                rows = {r["policy"]: r for r in m["rows"] if r["budget_kb"] == kb}
                i8, q = rows.get("int8"), rows.get(key)
                if not (i8 and q and i8.get("top1") is not None and q.get("top1") is not None):
                    continue
                r = ratio(i8["bitops_patch_stage"], q["bitops_patch_stage"])
                ok = 100 * (i8["top1"] - q["top1"]) <= 0.5
                if ok and (best is None or r > best["ratio"]):
                    best = {"ratio": r, "budget_kb": kb,
                            "drop_pt": round(100 * (i8["top1"] - q["top1"]), 2)}
            if best is None and not any(r["policy"] == key and r.get("top1") is not None
                                        for r in m["rows"]):
                continue
            out.append({"model": m["model"], "target": "patch-stage BitOPs",
                        "policy": key, "needed_ratio": BITOPS_TARGET, **(best or {}),
                        "met": bool(best) and best["ratio"] >= BITOPS_TARGET,
                        "missed_by": None if best and best["ratio"] >= BITOPS_TARGET else
                        round(BITOPS_TARGET - (best or {}).get("ratio", 0.0), 3)})
    return out


# ---------------------------------------------------------------- output

def fmt(x, spec: str = ",", dash: str = "–") -> str:
    return dash if x is None else format(x, spec)


def grid_of(r: dict) -> str:
    p = r.get("plan") or {}
    if not p:
        return "–"
    return "layer-wise" if not p.get("grid") else \
        f"{p['split_layer']} {p['grid'][0]}×{p['grid'][1]}"


def markdown(res: dict) -> str:
    a = res["args"]
    out = ["# Latency against the SRAM budget", "",
           f"Generated by `benchmarks/latency.py` on {res['env']['date']}. Each policy is "
           f"searched for the budget and deployed on {BOARD} (`quantmcu deploy`'s pipeline): "
           f"instructions (QEMU `-icount`) and modelled Cortex-M4 cycles (QEMU plugin, TRM "
           f"costs, zero-wait memory) per inference, mean over {a['images']} test images, every "
           f"output compared with the integer reference (`match`); peak SRAM = the arena of the "
           f"linked firmware (`nm`); top-1 and outlier rate on {a['test_images']:,} test "
           f"images through the policy's generated C on the host. Speed-up = int8 patches' "
           f"modelled cycles ÷ the policy's at the same budget. QuantMCU's λ is chosen "
           f"automatically on {a['val_images']} validation images (≤ 0.5 pt below int8); the "
           f"ablation without VDPC is {LABELS[ABLATED]} at its λ with the outlier routing "
           f"removed; "
           f"memory-driven's RAM budget is the SRAM budget; the RL agent runs "
           f"{a['rl_seconds']:g} s.", ""]
    if res.get("note"):
        out += [f"**Note.** {res['note']}", ""]
    trees = sorted({r["commit"] for m in res["models"] for r in m["rows"] if r.get("commit")})
    if trees:
        out += [f"Measured on the tree{'s' if len(trees) > 1 else ''} {', '.join(trees)}"
                + (" (each row's note names its tree)." if len(trees) > 1 else "."), ""]
    if not res["device_phi"]:
        out += ["The search has no device-cost Φ yet (`SearchParams.phi`): the device-Φ rows "
                "say so and the targets use the BitOPs Φ.", ""]
    for m in res["models"]:
        out += [f"## {m['model']}", "",
                f"int8 patches fit from {m['int8_min_peak_bytes']:,} B; layer-wise int8 peak "
                f"{m['layerwise_peak_bytes']:,} B.", "",
                "| budget KB | policy | plan | fits | peak SRAM B | instructions | "
                "modelled cycles | speed-up | top-1 % | Δ top-1 pt | outlier % | "
                "stage BitOPs ÷ | match | note |",
                "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for kb in m["budgets_kb"]:
            rows = sorted((r for r in m["rows"] if r["budget_kb"] == kb),
                          key=lambda r: list(LABELS).index(r["policy"]))
            by = {r["policy"]: r for r in rows}
            i8 = by.get("int8") if by.get("int8", {}).get("fits") else None
            for r in rows:
                if r.get("instructions_per_inference") is None:
                    fits = "–" if r["fits"] is None else "no"
                    out.append(f"| {kb} | {r['label']} | {grid_of(r)} | {fits} | "
                               f"{fmt(r.get('planned_peak_sram_bytes'))} | – | – | – | – | – "
                               f"| – | – | – | {r.get('reason') or ''} |")
                    continue
                sp = ratio(i8 and i8.get("cycles_per_inference"),
                           r.get("cycles_per_inference")) if i8 else None
                note = ((f"tree {r['commit']}. " if len(trees) > 1 and r.get("commit") else "")
                        + (r.get("reason") or "")
                        + (f"λ {r['lambda']:g}. " if r.get("lambda") is not None else "")
                        + (f"Policy: {r['source']}." if r.get("source") else "")).strip()
                dt = 100 * (r["top1"] - i8["top1"]) if i8 else None
                bo = ratio(i8 and i8["bitops_patch_stage"], r["bitops_patch_stage"]) \
                    if i8 else None
                out.append(
                    f"| {kb} | {r['label']} | {grid_of(r)} | {'yes' if r['fits'] else 'no'} | "
                    f"{r['peak_sram_bytes']:,} | {r['instructions_per_inference']:,} | "
                    f"{fmt(r.get('cycles_per_inference'))} | {fmt(sp, '.3f')} | "
                    f"{100 * r['top1']:.2f} | {fmt(dt, '+.2f')} | "
                    f"{100 * r['outlier_patch_rate']:.1f} | {fmt(bo, '.2f')} | "
                    f"{r['match_rate']:.3f} | {note} |")
        sm = smallest_fits(m)
        out += ["", "Smallest budget each policy fits (of the budgets run): " + "; ".join(
            f"{LABELS[k]} {v} KB" if v else f"{LABELS[k]} none" for k, v in sm.items()
            if any(r['policy'] == k for r in m["rows"])) + ".", ""]
    out += ["## Targets of #16", "", "| target | model | budget | needed | measured | "
            "Δ top-1 pt | met | missed by |", "|---|---|---|---:|---:|---:|---|---|"]
    for t in res["targets"]:
        if t.get("target") == "patch-stage BitOPs":
            out.append(f"| patch-stage BitOPs, {LABELS[t['policy']]}, ≤ 0.5 pt | {t['model']} | "
                       f"{fmt(t.get('budget_kb'))} KB | {t['needed_ratio']}× | "
                       f"{fmt(t.get('ratio'), '.2f')}× | {fmt(t.get('drop_pt'), '.2f')} | "
                       f"{'yes' if t['met'] else 'no'} | "
                       f"{'' if t['met'] else fmt(t['missed_by'], '.2f') + '×'} |")
            continue
        meas = (f"{fmt(t.get('cycles_speedup'), '.3f')} cycles, "
                f"{fmt(t.get('instructions_speedup'), '.3f')} instructions")
        miss = "" if t["met"] else (t.get("missing") or (
            f"{fmt(t['missed_by']['speedup'], '.3f')}× speed-up, "
            f"{fmt(t['missed_by']['accuracy_pt'], '.2f')} pt"))
        met = {True: "yes", False: "no", None: "–"}[t["met"]]
        out.append(f"| speed-up over int8 patches ({t['budget']}), "
                   f"{LABELS.get(t['policy'], 'QuantMCU')} | {t['model']} | "
                   f"{fmt(t['budget_kb'])} KB | {t['needed_speedup']}× | {meas} | "
                   f"{fmt(t.get('drop_pt'), '.2f')} | {met} | {miss} |")
    return "\n".join(out) + "\n"


def write_all(res: dict, out: str) -> None:
    res["targets"] = targets(res["models"])
    for m in res["models"]:
        m["smallest_fit_kb"] = smallest_fits(m)
    write_json(out + ".json", res)
    with open(out + ".md.tmp", "w") as f:
        f.write(markdown(res))
    os.replace(out + ".md.tmp", out + ".md")
    plot_latency_vs_budget(res["models"], out + ".png")


def refill(path: str, work_root: str) -> dict:
    """The results at `path` (.json) with every unmeasured row whose policy has been measured
    since filled in from the work directory (no model import, no planning)."""
    with open(path) as f:
        res = json.load(f)
    a = res["args"]
    for m in res["models"]:
        work = Work(work_root, m["model"])
        for r in m["rows"]:
            if r.get("reason") != NOT_RUN or not r.get("policy_digest"):
                continue
            got = work.measured(r["policy_digest"], a["images"], a["test_images"])
            if got:
                r.update(got, reason=None, fits=got["peak_sram_bytes"] <= r["budget_bytes"])
                if not r["fits"]:
                    r["reason"] = (f"the firmware's arena is {got['peak_sram_bytes']:,} B, "
                                   f"{got['peak_sram_bytes'] - r['budget_bytes']:,} B over the "
                                   "budget")
    return res


def read_results(path: str) -> dict:
    """A JSON written by this script, or exit with one line saying what is wrong with it."""
    try:
        with open(path) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"--merge: cannot read {path}: {e}")
    if not isinstance(res, dict) or not {"args", "models"} <= res.keys():
        raise SystemExit(f"--merge: {path} is not a result of benchmarks/latency.py "
                         "(no 'args' and 'models')")
    return res


def merge(res: dict, runs: list[dict]) -> dict:
    """`res` with the rows of `runs` (results of other runs of this script, e.g. one per
    model and budget made in parallel): a run's row replaces the row of the same model,
    budget and policy; budgets and models not in `res` are added. Each row keeps the tree it
    was measured on."""
    for run in runs:
        if run["args"] != res["args"]:
            raise SystemExit(f"--merge: a run made with {run['args']} cannot join one made "
                             f"with {res['args']} (images, test images, λ's validation "
                             "images and the RL time must be equal)")
        for new in run["models"]:
            m = next((m for m in res["models"] if m["model"] == new["model"]), None)
            if m is None:
                res["models"].append(new)
                continue
            keys = {(r["budget_kb"], r["policy"]) for r in new["rows"]}
            order = list(LABELS)
            m["rows"] = sorted([r for r in m["rows"] if (r["budget_kb"], r["policy"]) not in keys]
                               + new["rows"],
                               key=lambda r: (r["budget_kb"], order.index(r["policy"])))
            m["budgets_kb"] = sorted(set(m["budgets_kb"]) | set(new["budgets_kb"]))
    for m in res["models"]:
        for r in m["rows"]:
            if r.get("reason") == NOT_RUN:
                r["reason"] = NOT_MERGED
    res["env"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mbv2-fmnist", "mcunet-fmnist"])
    ap.add_argument("--budgets", type=int, default=6,
                    help="budgets (where the int8 plan changes) from the int8-patch minimum to "
                         "the layer-wise peak")
    ap.add_argument("--budgets-kb", type=int, nargs="+",
                    help="these budgets (KB) instead of the computed ones")
    ap.add_argument("--no-below", dest="below", action="store_false",
                    help="no budget below the int8-patch minimum")
    ap.add_argument("--policies", nargs="+", default=[k for k, _ in POLICIES],
                    choices=[k for k, _ in POLICIES])
    ap.add_argument("--images", type=int, default=200, help="images per deployment")
    ap.add_argument("--test-images", type=int, default=10000, help="images for top-1")
    ap.add_argument("--val-images", type=int, default=500,
                    help="validation images for QuantMCU's automatic λ")
    ap.add_argument("--rl-seconds", type=float, default=30.0)
    ap.add_argument("--work", default=WORK, help="cache of searched policies and measurements")
    ap.add_argument("--out", default=os.path.join(RESULTS, "latency"), help="output path stem")
    ap.add_argument("--note", help="a sentence on how this run was made, kept in the outputs")
    ap.add_argument("--policy-major", action="store_true",
                    help="each policy at every budget before the next policy (a run cut short "
                         "then has the first policies' whole curves)")
    ap.add_argument("--cached-only", action="store_true",
                    help="search and measure nothing: tables from the work directory, rows "
                         "without a cached measurement say so (to combine runs made in "
                         "parallel, e.g. one per budget)")
    ap.add_argument("--quick", action="store_true",
                    help="development run: 2 budgets, 20 deploy images, 500 test images, 300 "
                         "validation images, 10 s RL (same outputs; do not commit them)")
    ap.add_argument("--refill", action="store_true",
                    help="only fill the rows of --out's JSON not measured before from the work "
                         "directory, and rewrite its outputs")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="only merge the rows of these runs' JSON into --out's (a row replaces "
                         "the one of the same model, budget and policy) and rewrite its "
                         "outputs, with --note if given")
    a = ap.parse_args(argv)
    if a.merge:
        res = read_results(a.out + ".json")
        runs = [read_results(path) for path in a.merge]
        res = merge(res, runs)
        if a.note:
            res["note"] = a.note
        write_all(res, a.out)
        print(f"merged {len(runs)} run(s) into {a.out}.json, .md, .png")
        return 0
    if a.refill:
        write_all(refill(a.out + ".json", a.work), a.out)
        print(f"rewrote {a.out}.json, .md, .png")
        return 0
    if a.quick:
        a.budgets, a.images, a.test_images, a.val_images, a.rl_seconds = 2, 20, 500, 300, 10.0
        a.below = False
    for k in ("images", "test_images", "val_images", "budgets"):
        if getattr(a, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be at least 1")
    t0 = time.time()

    def log(s):
        print(f"[{time.time() - t0:6.0f} s] {s}", flush=True)

    res = {"benchmark": "latency", "board": BOARD, "device_phi": has_device_phi(),
           "commit": commit(), "note": a.note,
           "env": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
           "args": {k: getattr(a, k) for k in ("images", "test_images", "val_images",
                                               "rl_seconds", "quick")},
           "models": []}
    with tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        for name in a.models:
            res["models"].append(None)

            def done(m):
                res["models"][-1] = m
                write_all(res, a.out)
            bench_model(name, a, a.work, tmp, done, log)
    log(f"wrote {a.out}.json, .md, .png")
    bad = [r for m in res["models"] for r in m["rows"]
           if r.get("match_rate") is not None and r["match_rate"] != 1.0]
    for r in bad:
        print(f"{r['model']} {r['budget_kb']} KB {r['policy']}: match rate {r['match_rate']}",
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
