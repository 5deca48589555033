"""Regenerate the zoo's shipped policies (``python -m tvm_quantmcu.search.shipped``)."""
from __future__ import annotations

import argparse
import sys
import time

from .. import pipeline
from ..models.policies import SHIPPED, SHIPPED_PHI, SRAM_KB, policy_path
from .api import SearchParams, make_policy, prepare
from .engine import fastest_engine


def make(model: str, policy: str, progress: bool = False) -> str:
    """Search `policy` for `model` at its shipped SRAM budget and save it; returns the path.
    progress: a bar on stderr (images evaluated, the plan being searched)."""
    phi = SHIPPED_PHI if policy == "quantmcu" else "bitops"
    ctx = prepare(model, SearchParams(sram_kb=SRAM_KB[model], phi=phi), engine=fastest_engine())
    lam = "auto" if policy == "quantmcu" else None
    bar = pipeline.progress(0, f"search {policy}", progress)
    try:
        pol, info = make_policy(ctx, policy, lam, bar=bar)
    finally:
        bar.close()
    for c in info.get("candidates", []):
        print(f"  {model} {c['split_layer']} {c['grid'][0]}x{c['grid'][1]} "
              f"{'VDPC' if c['vdpc'] else 'no VDPC'}: lambda {c['lambda']}, validation top-1 "
              f"{100 * c['top1_val']:.2f}%, {c['device_cycles']:,.0f} modelled cycles",
              file=sys.stderr)
    path = policy_path(model, policy)
    pol.save(path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Regenerate the shipped policies (each at its "
                                "model's shipped SRAM budget; quantmcu with device Φ and the "
                                "automatic λ, which takes tens of minutes per model).")
    p.add_argument("--models", nargs="+", default=sorted(SRAM_KB), choices=sorted(SRAM_KB))
    p.add_argument("--policies", nargs="+", default=list(SHIPPED), choices=list(SHIPPED))
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    a = p.parse_args(argv)
    for m in a.models:
        for pol in a.policies:
            t0 = time.time()
            path = make(m, pol, progress=not a.no_progress)
            print(f"{path} ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
