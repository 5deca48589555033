"""Regenerate the zoo's shipped policies (``python -m tvm_quantmcu.search.shipped``)."""
from __future__ import annotations

import argparse

from ..models.policies import SHIPPED, SHIPPED_PHI, SRAM_KB, policy_path
from .api import SearchParams, make_policy, prepare
from .engine import fastest_engine


def make(model: str, policy: str) -> str:
    """Search `policy` for `model` at its shipped SRAM budget and save it; returns the path."""
    phi = SHIPPED_PHI if policy == "quantmcu" else "bitops"
    ctx = prepare(model, SearchParams(sram_kb=SRAM_KB[model], phi=phi), engine=fastest_engine())
    lam = "auto" if policy == "quantmcu" else None
    pol, _ = make_policy(ctx, policy, lam)
    path = policy_path(model, policy)
    pol.save(path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Regenerate the shipped policies.")
    p.add_argument("--models", nargs="+", default=sorted(SRAM_KB))
    p.add_argument("--policies", nargs="+", default=list(SHIPPED))
    a = p.parse_args(argv)
    for m in a.models:
        for pol in a.policies:
            print(make(m, pol))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
