"""Latency per policy: guest instructions per inference on the QEMU boards, from the deploy
benchmark (benchmarks/results/deploy.json, made by `python benchmarks/deploy.py`)."""
from __future__ import annotations

import json
import os

from .style import figure, save

DEPLOY_JSON = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "benchmarks", "results", "deploy.json")


def latency_rows(model: str, path: str = DEPLOY_JSON) -> list[dict]:
    """Rows (board, policy, instructions_per_inference, match_rate, images) of `model`, boards
    with an instruction counter only; [] when the benchmark has not covered the model."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return []
    if doc.get("model") != model:
        return []
    return [{k: r.get(k) for k in ("board", "policy", "instructions_per_inference",
                                   "match_rate", "images")}
            for r in doc.get("rows", []) if r.get("instructions_per_inference")]


def plot_latency(rows: list[dict], title: str, path: str) -> str:
    boards = sorted({r["board"] for r in rows})
    policies = sorted({r["policy"] for r in rows})
    fig, ax = figure(7.2, 4.2)
    width = 0.8 / max(len(policies), 1)
    for j, pol in enumerate(policies):
        xs, ys = [], []
        for i, b in enumerate(boards):
            r = next((r for r in rows if r["board"] == b and r["policy"] == pol), None)
            if r:
                xs.append(i + (j - (len(policies) - 1) / 2) * width)
                ys.append(r["instructions_per_inference"] / 1e6)
        ax.bar(xs, ys, width, label=pol, color=f"C{j}")
    top = max(r["instructions_per_inference"] for r in rows) / 1e6
    ax.set_ylim(0, 1.3 * top)                     # room for the legend above the bars
    ax.set_xticks(range(len(boards)), boards)
    ax.set_xlabel("board (QEMU, -icount)")
    ax.set_ylabel("instructions per inference (millions)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="policy", fontsize=8, ncol=len(policies), loc="upper center")
    return save(fig, path)


def latency_markdown(rows: list[dict], model: str, image: str | None) -> list[str]:
    if not rows:
        return ["No device measurements for this model yet: run `python benchmarks/deploy.py "
                f"--model {model}` (guest instructions on QEMU with the generated C model; "
                "never host timing).", ""]
    out = ["Guest instructions per inference on QEMU with the generated C model "
           "(`benchmarks/results/deploy.json`; every device output equal to the integer "
           "reference):", "", "| board | policy | instructions/inference | match rate |",
           "|---|---|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["board"], r["policy"])):
        out.append(f"| {r['board']} | {r['policy']} | {r['instructions_per_inference']:,} | "
                   f"{r['match_rate']:.4f} |")
    if image:
        out += ["", f"![instructions per inference]({image})"]
    return out + [""]


# ---------------------------------------------------------------- latency against SRAM budget

LATENCY_JSON = os.path.join(os.path.dirname(DEPLOY_JSON), "latency.json")
# policy keys of benchmarks/latency.py, in its table order, with their plot labels
BUDGET_POLICIES = (("layerwise-int8", "layer-wise int8"), ("int8", "int8 patches (MCUNetV2)"),
                   ("quantmcu-bitops", "QuantMCU, Φ BitOPs"),
                   ("quantmcu-device", "QuantMCU, Φ device"),
                   ("quantmcu-no-vdpc", "QuantMCU without VDPC"),
                   ("memory-driven", "memory-driven"), ("rl", "RL agent"))


def budget_latency(model: str, path: str = LATENCY_JSON) -> dict | None:
    """The latency benchmark's entry of `model` (budgets, rows per budget and policy), or None
    when the benchmark has not covered it."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("benchmark") != "latency":
        return None
    return next((m for m in doc.get("models") or [] if isinstance(m, dict)
                 and m.get("model") == model), None)


def _latency(r: dict) -> float | None:
    return r.get("cycles_per_inference") or r.get("instructions_per_inference")


def plot_latency_vs_budget(models: list[dict], path: str) -> str:
    """Modelled cycles per inference against the SRAM budget, one line per policy, one panel
    per model; a policy is drawn only at the budgets it fits."""
    fig, axes = figure(6.2 * len(models), 4.4, ncols=len(models))
    axes = axes if len(models) > 1 else [axes]
    for ax, m in zip(axes, models):
        for j, (key, label) in enumerate(BUDGET_POLICIES):
            pts = sorted((r["budget_kb"], _latency(r) / 1e6) for r in m["rows"]
                         if r["policy"] == key and r.get("fits") and _latency(r))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="os^vDxP"[j % 7],
                        color=f"C{j}", label=label, alpha=0.85)
        for kb in m.get("budgets_kb", []):
            ax.axvline(kb, color="0.85", lw=0.6, zorder=0)
        ax.set_xlabel("SRAM budget (KB)")
        ax.set_ylabel("modelled Cortex-M4 cycles per inference (millions)")
        ax.set_title(f"{m['model']} on qemu-m4")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)


def budget_latency_markdown(m: dict | None, model: str, image: str | None) -> list[str]:
    if not m:
        return ["No latency-against-budget measurements for this model: run `python "
                f"benchmarks/latency.py --models {model}`.", ""]
    out = ["Latency against the SRAM budget (`benchmarks/results/latency.json`): modelled "
           "Cortex-M4 cycles per inference on qemu-m4 of each policy searched for the budget; "
           "– = does not fit.", ""]
    keys = [(k, l) for k, l in BUDGET_POLICIES if any(r["policy"] == k for r in m["rows"])]
    out += ["| budget KB | " + " | ".join(l for _, l in keys) + " |",
            "|---:|" + "---:|" * len(keys)]
    for kb in m.get("budgets_kb", []):
        by = {r["policy"]: r for r in m["rows"] if r["budget_kb"] == kb}
        cells = [f"{_latency(by[k]):,}" if k in by and by[k].get("fits") and _latency(by[k])
                 else "–" for k, _ in keys]
        out.append(f"| {kb} | " + " | ".join(cells) + " |")
    if image:
        out += ["", f"![latency against SRAM budget]({image})"]
    return out + [""]
