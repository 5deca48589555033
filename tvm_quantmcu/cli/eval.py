"""`quantmcu eval`: test-set accuracy of fp32 and of the integer reference."""
from __future__ import annotations

import json
import time

from . import UserError
from .options import add_model_options, data_source, model_ref


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="accuracy of fp32 and the integer reference on the test set",
        description="Evaluate a model on the test set (Fashion-MNIST, or --data): fp32 "
                    "(torch) and the integer numpy reference (the golden model) with all "
                    "activations at --bits, calibrated on the training split.")
    add_model_options(p)
    p.add_argument("--bits", type=int, default=8, choices=[8, 4, 2],
                   help="activation bits of every feature map (default 8)")
    p.add_argument("--limit", type=int, default=None,
                   help="evaluate only the first N test images (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from .. import pipeline

    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    ref = model_ref(args, need_trained="evaluate")
    name = ref.name
    t0 = time.time()
    imp = pipeline.load(ref)
    src = data_source(args, imp.input_shape)
    test = src.split("test")
    n = len(test) if args.limit is None else min(args.limit, len(test))
    qg = pipeline.quantized(imp, args.bits, data_source=src)
    bar = pipeline.progress(2 * n, f"eval {name}", not (args.no_progress or args.json))
    correct = 0
    with torch.no_grad():
        for x, y in test.batches(imp.input_shape, 500, n):
            correct += int((imp.torch_model(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
            bar.update(len(x))
    fp32 = correct / n
    int_top1, _ = pipeline.evaluate_int(qg, test, imp.input_shape, n, bar=bar)
    bar.close()
    res = {"model": name, "data": src.name, "images": n, "bits": args.bits, "fp32_top1": fp32,
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
