"""`quantmcu models`: the model zoo."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("models", help="list the model zoo",
                       description="List the registered models with input shape, parameters "
                                   "and the recorded test accuracy of trained checkpoints.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import models
    rows = []
    for name, mi in models.REGISTRY.items():
        met = models.recorded_metrics(name)
        rows.append({"model": name, "input": "×".join(map(str, mi.input_shape)),
                     "trained": mi.trained, "test_top1": met.get("test_top1"),
                     "description": mi.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<15} {'input':<11} {'test top-1':<10}  description")
    for r in rows:
        acc = f"{r['test_top1']:.4f}" if r["test_top1"] is not None else "-"
        print(f"{r['model']:<15} {r['input']:<11} {acc:<10}  {r['description']}")
    return 0
