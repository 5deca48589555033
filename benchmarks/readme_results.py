"""Regenerate the README's results section from benchmarks/results/*.json.

    python benchmarks/readme_results.py            # rewrite the section in README.md
    python benchmarks/readme_results.py --check    # exit 1 with a diff when README is stale

The section sits between ``<!-- results:begin -->`` and ``<!-- results:end -->``. A JSON file is
recognised by its shape (a search benchmark has ``models[].policies``, a kernel benchmark has
``layers[].runs``); any other JSON file is ignored, so new benchmarks do not break the README.
The output depends only on the JSON contents: files, models, policies and layers are sorted
and every number has a fixed format. Only the standard library is used, so the check is fast.
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
README = REPO / "README.md"
BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
GENERATOR = "python benchmarks/readme_results.py"

# Table order of the search policies: baselines, QuantMCU, its ablations, other mixed precision.
POLICY_ORDER = ("layerwise-int8", "int8", "quantmcu", "vdqs-no-vdpc", "vdpc-uniform4",
                "vdpc-uniform2", "memory-driven", "rl")
DASH = "–"


class StaleReadmeError(RuntimeError):
    """README's results section differs from what the JSON produces."""


# ---------------------------------------------------------------- loading

def is_search_result(doc) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("models"), list)
            and all(isinstance(m, dict) and isinstance(m.get("policies"), list)
                    for m in doc["models"]))


def is_kernel_result(doc) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("layers"), list)
            and all(isinstance(l, dict) and isinstance(l.get("runs"), list)
                    for l in doc["layers"]))


def is_deploy_result(doc) -> bool:
    return (isinstance(doc, dict) and doc.get("benchmark") == "deploy"
            and isinstance(doc.get("rows"), list)
            and all(isinstance(r, dict) for r in doc["rows"]))


def is_tune_result(doc) -> bool:
    return (isinstance(doc, dict) and doc.get("benchmark") == "tune"
            and isinstance(doc.get("runs"), list) and isinstance(doc.get("deploy"), dict))


def is_latency_result(doc) -> bool:
    return (isinstance(doc, dict) and doc.get("benchmark") == "latency"
            and isinstance(doc.get("models"), list)
            and all(isinstance(m, dict) and isinstance(m.get("rows"), list)
                    for m in doc["models"]))


def load_results(results_dir: Path) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(search results, kernel results) as (file name, document), sorted by file name.
    Unreadable or unknown JSON files are skipped: they belong to other benchmarks."""
    searches, kernels = load_all(results_dir)[:2]
    return searches, kernels


def load_all(results_dir: Path):
    """(search, kernel, deploy, tune, latency) results as (file name, document) lists."""
    searches, kernels, deploys, tunes, latencies = [], [], [], [], []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if is_search_result(doc):
            searches.append((path.name, doc))
        elif is_kernel_result(doc):
            kernels.append((path.name, doc))
        elif is_deploy_result(doc):
            deploys.append((path.name, doc))
        elif is_tune_result(doc):
            tunes.append((path.name, doc))
        elif is_latency_result(doc):
            latencies.append((path.name, doc))
    return searches, kernels, deploys, tunes, latencies


# ---------------------------------------------------------------- formatting

def num(x, fmt: str, suffix: str = "") -> str:
    """A number in a fixed format, or a dash when the JSON does not have it."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return DASH
    return format(x, fmt) + suffix


def kib(nbytes) -> str:
    return num(nbytes / 1024 if isinstance(nbytes, (int, float)) else None, ".1f")


def pct(frac, digits: int = 1) -> str:
    return num(frac * 100 if isinstance(frac, (int, float)) else None, f".{digits}f")


def span(values: list[float], fmt: str, suffix: str = "") -> str:
    if not values:
        return DASH
    lo, hi = min(values), max(values)
    return f"{lo:{fmt}}–{hi:{fmt}}{suffix}"


def prose(text: str) -> list[str]:
    """A paragraph wrapped at 100 columns, as the rest of the README."""
    return textwrap.wrap(text, 100, break_long_words=False, break_on_hyphens=False)


def table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    sep = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(r) + " |" for r in [header, sep] + rows]


# ---------------------------------------------------------------- search benchmark

def canonical(item) -> str:
    """Last sort key: equal-looking rows still sort the same whatever the JSON's order."""
    return json.dumps(item, sort_keys=True, default=str)


def policy_label(row: dict) -> str:
    name = str(row.get("policy", "?"))
    budget = (row.get("params") or {}).get("ram_budget_bytes")
    if isinstance(budget, (int, float)):
        return f"{name} (RAM ≤ {budget / 1024:.1f} KB)"
    return name


def policy_key(row: dict) -> tuple:
    name = str(row.get("policy", ""))
    rank = POLICY_ORDER.index(name) if name in POLICY_ORDER else len(POLICY_ORDER)
    budget = (row.get("params") or {}).get("ram_budget_bytes")
    lam = row.get("lambda")
    return (rank, name, -budget if isinstance(budget, (int, float)) else 0,
            lam if isinstance(lam, (int, float)) else -1.0, canonical(row))


def search_model_section(model: dict) -> list[str]:
    plan = model.get("plan") or {}
    grid = plan.get("grid")
    where = []
    if plan.get("split_layer"):
        where.append(f"split after {plan['split_layer']}")
    if isinstance(grid, list) and len(grid) == 2:
        where.append(f"grid {grid[0]}×{grid[1]}")
    if plan.get("sram_kb") is not None:
        where.append(f"SRAM budget {num(plan['sram_kb'], 'g')} KB")
    out = [f"**{model.get('model', '?')}**" + (f" ({', '.join(where)})" if where else ""), ""]
    rows = []
    for r in sorted(model["policies"], key=policy_key):
        rows.append([policy_label(r), num(r.get("lambda"), "g"), pct(r.get("top1"), 2),
                     num(r.get("images"), ","),
                     num(r.get("bitops_patch_stage_vs_int8"), ".2f", "×"),
                     pct(r.get("outlier_patch_rate")), kib(r.get("peak_sram_bytes")),
                     kib(r.get("flash_bytes"))])
    out += table(["policy", "λ", "top-1 %", "images", "patch-stage BitOPs vs int8",
                  "outlier patches %", "peak SRAM KB", "flash KB"],
                 ["l", "r", "r", "r", "r", "r", "r", "r"], rows)
    s = model.get("summary") or {}
    notes = []
    if "best_ratio_at_0.5pt" in s:
        notes.append("best patch-stage BitOPs ratio on the λ front within 0.5 pt of int8: "
                     f"{num(s['best_ratio_at_0.5pt'], '.2f', '×')}")
    if "drop_pt_at_2.2x" in s:
        notes.append(f"top-1 drop at ≥ 2.2× (the paper's headline): "
                     f"{num(s['drop_pt_at_2.2x'], '.2f', ' pt')}")
    if notes:
        text = "; ".join(notes)
        out += [""] + prose(text[0].upper() + text[1:] + ".")
    return out + [""]


def search_section(name: str, doc: dict) -> list[str]:
    images = doc.get("images")
    how = ("each policy's generated C run on the host (bit-exact with the integer "
           "simulator)" if doc.get("engine") == "c" else "exact integer simulation")
    out = prose(f"Policies (`benchmarks/results/{name}`, `python benchmarks/search.py`): "
                f"{how}, with the device's VDPC routing"
                + (f" on {num(images, ',')} Fashion-MNIST test images" if images else "")
                + ". BitOPs = MACs × weight bits × input-activation bits over the patch stage, "
                  "halo included; the ratio is int8 patch-based (MCUNetV2) ÷ policy, higher is "
                  "fewer BitOPs.") + [""]
    for model in sorted(doc["models"], key=lambda m: (str(m.get("model", "")), canonical(m))):
        out += search_model_section(model)
    return out


# ---------------------------------------------------------------- kernel benchmark

def instructions_of(layer: dict, what: str = "instructions") -> dict[tuple[str, int], float]:
    """(schedule, input bits) → instructions (or modelled cycles: what="cycles"), for the
    8-bit-output runs."""
    out = {}
    for run in layer["runs"]:
        if not isinstance(run, dict) or run.get("out_bits", 8) != 8:
            continue
        n = run.get(what)
        if isinstance(n, (int, float)) and n > 0:
            out[(run.get("schedule"), run.get("in_bits"))] = float(n)
    return out


def kernel_m55_section(name: str, doc: dict) -> list[str]:
    """The Cortex-M55 kernel benchmark (kernels.py --m55): DSP vs Helium micro-kernels."""
    env = doc.get("env") or {}
    layers = sorted(doc["layers"], key=lambda l: (str(l.get("layer", "")), canonical(l)))
    mismatches = sum(int(r.get("mismatches") or 0) for l in layers for r in l["runs"]
                     if isinstance(r, dict))
    src = next((l["cmsis_nn"].get("source") for l in layers
                if isinstance(l.get("cmsis_nn"), dict)), None)
    out = prose(f"Kernels on the Cortex-M55 (`benchmarks/results/{name}`, `python "
                f"benchmarks/kernels.py --m55`): instructions per MAC on QEMU "
                f"{env.get('board', 'mps3-an547')} (`-icount`), `c` = modelled Cortex-M55 "
                "cycles per MAC (QEMU plugin `cpu=m55`: Helium instructions 2 cycles, no beat "
                "overlap); `dsp` = our DSP micro-kernels kept on the M55, `mve` = the Helium "
                "ones the target selects; CMSIS-NN v7 (MVE and DSP-only builds) measured "
                "bit-exactly on the same emulator and plugin, on identical data side by side "
                "with ours" + (f" ({src})" if src else " (not measured here)")
                + f"; {mismatches} output values differ from the integer reference.") + [""]
    rows = []
    for l in layers:
        macs = l.get("macs")
        per = {k: v / macs for k, v in instructions_of(l).items()} if macs else {}
        cyc = {k: v / macs for k, v in instructions_of(l, "cycles").items()} if macs else {}
        cm = l.get("cmsis_nn") if isinstance(l.get("cmsis_nn"), dict) else {}
        mve, dsp = cm.get("mve") or {}, cm.get("dsp") or {}
        m8, c8 = per.get(("mve", 8)), cyc.get(("mve", 8))
        ti, tc = mve.get("instr_per_mac"), mve.get("cycles_per_mac")
        rows.append([str(l.get("layer", "?")), num(macs, ","), num(per.get(("dsp", 8)), ".3f"),
                     num(m8, ".3f"), num(per.get(("mve", 4)), ".3f"),
                     num(per.get(("mve", 2)), ".3f"), num(cyc.get(("dsp", 8)), ".3f"),
                     num(c8, ".3f"), num(ti, ".3f"), num(tc, ".3f"),
                     num(dsp.get("instr_per_mac"), ".3f"), num(dsp.get("cycles_per_mac"), ".3f"),
                     num(m8 / ti if m8 and ti else None, ".2f", "×"),
                     num(c8 / tc if c8 and tc else None, ".2f", "×")])
    out += table(["layer", "MACs", "dsp", "mve 8b", "mve 4b", "mve 2b", "dsp c", "mve 8b c",
                  "CMSIS-NN MVE", "CMSIS-NN MVE c", "CMSIS-NN DSP", "CMSIS-NN DSP c",
                  "mve 8b÷CMSIS-NN MVE", "mve 8b c÷CMSIS-NN MVE c"],
                 ["l"] + ["r"] * 13, rows) + [""]
    return out


def kernel_section(name: str, doc: dict) -> list[str]:
    if doc.get("benchmark") == "kernels-m55":
        return kernel_m55_section(name, doc)
    env = doc.get("env") or {}
    board = env.get("board", "QEMU")
    opt = env.get("opt", "")
    layers = sorted(doc["layers"], key=lambda l: (str(l.get("layer", "")), canonical(l)))
    mismatches = sum(int(r.get("mismatches") or 0) for l in layers for r in l["runs"]
                     if isinstance(r, dict))
    out = prose(f"Kernels (`benchmarks/results/{name}`, `python benchmarks/kernels.py`): "
                f"instructions per MAC on QEMU {board} (Cortex-M4, `-icount`) and, in the `c` "
                "columns, modelled Cortex-M4 cycles per MAC (QEMU plugin, TRM costs; *rank*: "
                "do instructions and cycles order the row's variants alike?), arm-none-eabi-gcc "
                f"{opt}, 8-bit outputs; `default` = TVM's lowering without a schedule, `dsp` = "
                f"our tensorized schedule at 8/4/2-bit inputs; {mismatches} output values "
                "differ from the integer reference.") + [""]
    rows, speedup, r4, r2 = [], [], [], []
    for l in layers:
        ins = instructions_of(l)
        macs = l.get("macs")
        per_mac = {k: v / macs for k, v in ins.items()} if isinstance(macs, int) and macs else {}
        d8, s8 = ins.get(("default", 8)), ins.get(("dsp", 8))
        if d8 and s8:
            speedup.append(d8 / s8)
        if s8 and ins.get(("dsp", 4)):
            r4.append(ins[("dsp", 4)] / s8)
        if s8 and ins.get(("dsp", 2)):
            r2.append(ins[("dsp", 2)] / s8)
        cmsis = l.get("cmsis_nn_instr_per_mac")
        if not isinstance(cmsis, (int, float)) or isinstance(cmsis, bool):
            continue
        dsp8 = per_mac.get(("dsp", 8))
        cyc = {k: v / macs for k, v in instructions_of(l, "cycles").items()} if per_mac else {}
        rank = {True: "agree", False: "differ"}.get(l.get("ranking_agrees"), "–")
        rows.append([str(l.get("layer", "?")), num(macs, ","),
                     num(per_mac.get(("default", 8)), ".2f"), num(dsp8, ".2f"),
                     num(per_mac.get(("dsp", 4)), ".2f"), num(per_mac.get(("dsp", 2)), ".2f"),
                     num(cyc.get(("default", 8)), ".2f"), num(cyc.get(("dsp", 8)), ".2f"),
                     num(cyc.get(("dsp", 4)), ".2f"), num(cyc.get(("dsp", 2)), ".2f"), rank,
                     num(d8 / s8 if d8 and s8 else None, ".2f", "×"), num(cmsis, ".1f"),
                     num(dsp8 / cmsis if dsp8 and cmsis else None, ".2f")])
    if rows:
        out += table(["layer (CMSIS-NN shapes)", "MACs", "default", "dsp 8b", "dsp 4b",
                      "dsp 2b", "default c", "dsp 8b c", "dsp 4b c", "dsp 2b c", "rank",
                      "default÷dsp", "CMSIS-NN", "dsp 8b÷CMSIS-NN"],
                     ["l"] + ["r"] * 9 + ["c"] + ["r"] * 3, rows) + [""]
    out += prose(f"Over all {len(layers)} layers (CMSIS-NN shapes and patch-stage tiles): "
                 f"default÷dsp {span(speedup, '.2f', '×')}; dsp 4-bit÷8-bit instructions "
                 f"{span(r4, '.2f')}; 2-bit÷8-bit {span(r2, '.2f')} (below 1 = fewer "
                 "instructions).") + [""]
    return out


def deploy_section(name: str, doc: dict) -> list[str]:
    rows = sorted(doc["rows"], key=lambda r: (str(r.get("board")), str(r.get("policy"))))
    n = rows[0].get("images") if rows else None
    out = [f"### End to end on the device: {doc.get('model', '?')} (`{name}`)", ""]
    out += prose(f"{num(n, ',d')} test images per row through `quantmcu deploy`: generated C, "
                 "firmware, serial RPC; every output compared with the integer reference. "
                 "Instructions per inference are QEMU `-icount` guest instructions (mean over "
                 "the images).") + [""]
    body = []
    for r in rows:
        body.append([str(r.get("board")), str(r.get("policy")), num(r.get("device_top1"), ".4f"),
                     num(r.get("match_rate"), ".4f"),
                     num(r.get("instructions_per_inference"), ",d"),
                     num(r.get("cycles_per_inference"), ",d"),
                     num(r.get("arena_bytes"), ",d"), num(r.get("flash_bytes"), ",d"),
                     pct(r.get("outlier_patch_rate"))])
    out += table(["board", "policy", "device top-1", "match rate", "instructions/inference",
                  "modelled M4 cycles/inference", "arena B", "flash B", "outlier patches %"],
                 ["l", "l"] + ["r"] * 7, body)
    by = {(r.get("board"), r.get("policy")): r for r in rows}
    ratios = []
    for b in sorted({str(r.get("board")) for r in rows}):
        q = (by.get((b, "quantmcu")) or {}).get("instructions_per_inference")
        i = (by.get((b, "int8")) or {}).get("instructions_per_inference")
        if q and i:
            ratios.append(f"{b} {i / q:.3f}")
    if ratios:
        out += [""] + prose("Latency ratio int8 ÷ quantmcu in instructions (above 1: quantmcu "
                            "is faster): " + "; ".join(ratios) + ".")
    anchor = doc.get("anchor") or {}
    if anchor.get("rows"):
        pub = anchor.get("published_cycles")
        out += [""] + prose(f"Latency anchor {anchor.get('model', '?')} (MobileNetV1 0.25, "
                            "96×96×3, the MLPerf Tiny visual-wake-words shape, random weights, "
                            f"int8) on {anchor.get('board', '?')}; reference: "
                            f"{anchor.get('published', '?')} ≈ {num(pub, ',d')} cycles.") + [""]
        out += table(["policy", "match rate", "instructions/inference",
                      "modelled M4 cycles/inference", "cycles ÷ published"],
                     ["l"] + ["r"] * 4,
                     [[str(r.get("policy")), num(r.get("match_rate"), ".4f"),
                       num(r.get("instructions_per_inference"), ",d"),
                       num(r.get("cycles_per_inference"), ",d"),
                       num(r["cycles_per_inference"] / pub
                           if r.get("cycles_per_inference") and pub else None, ".2f")]
                      for r in anchor["rows"]])
    return out + [""]


def tune_section(name: str, doc: dict) -> list[str]:
    out = [f"### Autotuning on the device: {doc.get('model', '?')}, {doc.get('policy', '?')} "
           f"policy, {doc.get('board', '?')} (`{name}`)", ""]
    out += prose("`quantmcu tune --trials N` into a fresh database per row; kernel "
                 "instructions per inference weight each kernel by its runs per inference.")
    out += [""]
    body = []
    for r in doc["runs"]:
        sc = r.get("scratch_bytes_max") or {}
        body.append([num(r.get("trials"), ",d"), num(r.get("new_measurements"), ",d"),
                     num(r.get("kernel_instructions_default"), ",d"),
                     num(r.get("kernel_instructions_tuned"), ",d"), num(r.get("ratio"), ".4f"),
                     f"{r.get('tasks_improved')} of {r.get('tasks')}",
                     f"{num(sc.get('default'), ',d')} → {num(sc.get('tuned'), ',d')}"])
    out += table(["trials", "measurements", "default", "tuned", "tuned ÷ default",
                  "tasks improved", "largest scratch B"], ["r"] * 6 + ["l"], body)
    dep = doc["deploy"]
    u, t = dep.get("untuned") or {}, dep.get("tuned") or {}
    out += [""] + prose(
        f"`quantmcu deploy --tuning-db` ({num(dep.get('images'), ',d')} images, database of the "
        f"last row): {num(u.get('instructions_per_inference'), ',d')} → "
        f"{num(t.get('instructions_per_inference'), ',d')} instructions per inference "
        f"(×{num(dep.get('tuned_over_untuned'), '.4f')}), match rate "
        f"{num(t.get('match_rate'), '.4f')}.")
    return out + [""]


def latency_cell(r: dict | None) -> str:
    """Modelled cycles where the policy fits, a dash where it does not, n/m unmeasured."""
    if r is None or r.get("fits") is None:
        return "n/m"
    return num(r.get("cycles_per_inference"), ",d") if r["fits"] else DASH


def latency_section(name: str, doc: dict) -> list[str]:
    a = doc.get("args") or {}
    out = [f"### Latency against the SRAM budget (`{name}`)", ""]
    out += prose(f"`python benchmarks/latency.py`: every policy searched for each SRAM budget "
                 f"and deployed on {doc.get('board', '?')}; modelled Cortex-M4 cycles per "
                 f"inference (QEMU plugin; mean over {num(a.get('images'), ',d')} images, "
                 f"every output bit-exact with the integer reference), {DASH} where the "
                 "policy does not fit the budget (peak SRAM read from the linked firmware), "
                 "n/m where it was not measured. "
                 f"Top-1 on {num(a.get('test_images'), ',d')} test images in "
                 "`benchmarks/results/latency.md`.") + [""]
    if doc.get("note"):
        out += prose(f"Note: {doc['note']}") + [""]
    for m in sorted(doc["models"], key=lambda m: str(m.get("model", ""))):
        rows = [r for r in m["rows"] if isinstance(r, dict)]
        keys = []
        for r in rows:
            if r.get("policy") not in [k for k, _ in keys]:
                keys.append((r.get("policy"), str(r.get("label", r.get("policy")))))
        body = []
        for kb in m.get("budgets_kb") or []:
            by = {r.get("policy"): r for r in rows if r.get("budget_kb") == kb}
            body.append([num(kb, "d")] + [latency_cell(by.get(k)) for k, _ in keys])
        out += [f"**{m.get('model', '?')}** (int8 patches fit from "
                f"{num(m.get('int8_min_peak_bytes'), ',d')} B, layer-wise int8 peak "
                f"{num(m.get('layerwise_peak_bytes'), ',d')} B)", ""]
        out += table(["budget KB"] + [l for _, l in keys], ["r"] * (len(keys) + 1), body)
        small = m.get("smallest_fit_kb") or {}
        out += [""] + prose("Smallest budget fitted: " + "; ".join(
            f"{l} {num(small.get(k), 'd', ' KB') if small.get(k) else 'none'}"
            for k, l in keys) + ".") + [""]
    body = []
    for t in doc.get("targets") or []:
        if t.get("target") == "patch-stage BitOPs":
            met = "yes" if t.get("met") else f"no, by {num(t.get('missed_by'), '.2f', '×')}"
            body.append([f"patch-stage BitOPs ÷, {t.get('policy')}", str(t.get("model")),
                         num(t.get("budget_kb"), "d", " KB"),
                         num(t.get("needed_ratio"), "g", "×"), num(t.get("ratio"), ".2f", "×"),
                         num(t.get("drop_pt"), ".2f"), met])
        else:
            miss = t.get("missed_by") or {}
            met = "yes" if t.get("met") else (
                f"no, by {num(miss.get('speedup'), '.3f', '×')} and "
                f"{num(miss.get('accuracy_pt'), '.2f', ' pt')}" if t.get("met") is False
                else str(t.get("missing") or "n/m"))
            body.append([f"speed-up over int8 patches ({t.get('budget')}), "
                         f"{t.get('policy') or 'QuantMCU'}",
                         str(t.get("model")), num(t.get("budget_kb"), "d", " KB"),
                         num(t.get("needed_speedup"), "g", "×"),
                         f"{num(t.get('cycles_speedup'), '.3f', '×')} cycles, "
                         f"{num(t.get('instructions_speedup'), '.3f', '×')} instructions",
                         num(t.get("drop_pt"), ".2f"), met])
    if body:
        out += table(["target (#16)", "model", "budget", "needed", "measured", "Δ top-1 pt",
                      "met"], ["l", "l", "r", "r", "r", "r", "l"], body) + [""]
    return out


# ---------------------------------------------------------------- README section

def render(results_dir: Path = RESULTS) -> str:
    """The generated block, markers included."""
    searches, kernels, deploys, tunes, latencies = load_all(results_dir)
    out = [BEGIN, f"<!-- generated by `{GENERATOR}` from benchmarks/results/*.json;",
           "     rerun the benchmark to change it, do not edit this block -->", ""]
    for name, doc in searches:
        out += search_section(name, doc)
    for name, doc in kernels:
        out += kernel_section(name, doc)
    for name, doc in deploys:
        out += deploy_section(name, doc)
    for name, doc in tunes:
        out += tune_section(name, doc)
    for name, doc in latencies:
        out += latency_section(name, doc)
    if not (searches or kernels or deploys or tunes or latencies):
        out += [f"No benchmark results in `{Path(results_dir).name}/` yet.", ""]
    return "\n".join(out + [END])


def split_readme(text: str, readme: Path) -> tuple[str, str, str]:
    """(before, section with markers, after)."""
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < 0 or stop < start or text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"{readme}: needs exactly one '{BEGIN}' followed by one '{END}' "
                         "(put them under '## Results')")
    stop += len(END)
    return text[:start], text[start:stop], text[stop:]


def check(readme: Path = README, results_dir: Path = RESULTS) -> None:
    """Raise StaleReadmeError with a unified diff when README's section is not current."""
    _, current, _ = split_readme(Path(readme).read_text(), readme)
    wanted = render(results_dir)
    if current != wanted:
        diff = difflib.unified_diff(current.splitlines(), wanted.splitlines(),
                                    f"{readme} (results section)", "from the JSON results",
                                    lineterm="")
        raise StaleReadmeError(f"{readme}: the results section is stale; run `{GENERATOR}`.\n"
                               + "\n".join(diff))


def update(readme: Path = README, results_dir: Path = RESULTS) -> bool:
    """Rewrite the section; True when the file changed."""
    text = Path(readme).read_text()
    before, current, after = split_readme(text, readme)
    wanted = render(results_dir)
    if current == wanted:
        return False
    Path(readme).write_text(before + wanted + after)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 with a diff when README is stale")
    ap.add_argument("--readme", type=Path, default=README)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    try:
        if args.check:
            check(args.readme, args.results)
            print(f"{args.readme}: results section is current")
        else:
            changed = update(args.readme, args.results)
            print(f"{args.readme}: results section {'updated' if changed else 'already current'}")
    except StaleReadmeError as e:
        print(e, file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
