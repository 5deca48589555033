"""`quantmcu eval`: test-set accuracy of fp32 and of the integer reference."""
from __future__ import annotations

import json
import time

from . import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="accuracy of fp32 and the integer reference on the test set",
        description="Evaluate a zoo model on the Fashion-MNIST test set: fp32 (torch) and the "
                    "integer numpy reference (the golden model) with all activations at --bits.")
    p.add_argument("--model", default=None, help="zoo model name (default: mbv2-fmnist)")
    p.add_argument("--bits", type=int, default=8, choices=[8, 4, 2],
                   help="activation bits of every feature map (default 8)")
    p.add_argument("--limit", type=int, default=None,
                   help="evaluate only the first N test images (default: all 10,000)")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="evaluate this state-dict file instead of the committed checkpoint")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from .. import data, models, pipeline

    name = args.model or models.DEFAULT_MODEL
    mi = models.info(name)
    if not mi.trained:
        raise UserError(f"{name} is architecture-only (random weights): accuracy is meaningless; "
                        f"trained models: {', '.join(n for n, m in models.REGISTRY.items() if m.trained)}")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    t0 = time.time()
    test = data.load("test")
    n = len(test) if args.limit is None else min(args.limit, len(test))
    imp = pipeline.load(name, args.checkpoint)
    qg = pipeline.quantized(name, args.bits, checkpoint=args.checkpoint)
    bar = pipeline.progress(2 * n, f"eval {name}", not (args.no_progress or args.json))
    correct = 0
    with torch.no_grad():
        for x, y in test.batches(imp.input_size, 500, n):
            correct += int((imp.torch_model(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
            bar.update(len(x))
    fp32 = correct / n
    int_top1, _ = pipeline.evaluate_int(qg, test, imp.input_size, n, bar=bar)
    bar.close()
    res = {"model": name, "images": n, "bits": args.bits, "fp32_top1": fp32,
           "int_top1": int_top1, "drop_pt": round(100 * (fp32 - int_top1), 2),
           "calibration_images": pipeline.CALIBRATION_IMAGES,
           "range": f"{pipeline.RANGE_METHOD} {pipeline.RANGE_PCT}",
           "seconds": round(time.time() - t0, 1)}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{name}: fp32 top-1 {fp32:.4f}, int{args.bits} top-1 {int_top1:.4f} "
              f"({res['drop_pt']:+.2f} pt drop) on {n} test images")
    return 0
