"""`quantmcu report`: markdown + PNG plots of a model's patch plan and policies."""
from __future__ import annotations

import os
import sys

from . import UserError
from .options import add_model_options, data_source, model_ref


def register(sub) -> None:
    from ..report.collect import BENCHMARK_JSON, DEFAULT_IMAGES, DEFAULT_RL_SECONDS
    from ..search import DEFAULT_SRAM_KB
    p = sub.add_parser(
        "report", help="write a markdown report with plots of a model's plan and policies",
        description="Write DIR/report.md with PNG plots: SRAM per layer (layer-by-layer, "
                    "patch-based int8, QuantMCU), the bit width of every patch-stage feature "
                    "map per VDPC branch, the outlier-patch rate per patch position, and the "
                    "BitOPs/accuracy front over λ with the baselines. Numbers come from "
                    f"{os.path.relpath(BENCHMARK_JSON)} when it covers the model and budget, "
                    "otherwise they are computed on --images test images.")
    add_model_options(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="report directory (default reports/MODEL/)")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                   help=f"test images per policy when computing (default {DEFAULT_IMAGES}); "
                        "also the validation images of the automatic λ, up to 2000")
    p.add_argument("--sram-kb", type=float, default=DEFAULT_SRAM_KB,
                   help=f"SRAM budget for activations in KB (default {DEFAULT_SRAM_KB})")
    p.add_argument("--rl-seconds", type=float, default=DEFAULT_RL_SECONDS,
                   help=f"search time of the RL baseline (default {DEFAULT_RL_SECONDS:g} s; "
                        "0 leaves it out)")
    p.add_argument("--recompute", action="store_true",
                   help="compute every number even when the benchmark JSON has them")
    p.add_argument("--benchmark-json", default=BENCHMARK_JSON, metavar="FILE",
                   help="search benchmark results to reuse (default %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import report
    from ..report.build import OutputDirError

    ref = model_ref(args)                   # unknown name → one line listing the known ones
    src = data_source(args, ref.input_shape)
    if args.images < 1:
        raise UserError("--images must be at least 1")
    if args.sram_kb <= 0:
        raise UserError("--sram-kb must be positive")
    if args.rl_seconds < 0:
        raise UserError("--rl-seconds must not be negative")
    out = args.out or os.path.join("reports", ref.name)
    try:
        report.build.check_output_dir(out)  # fail before minutes of measuring
    except OutputDirError as e:
        raise UserError(str(e)) from e
    log = lambda s: print(f"report {ref.name}: {s}", file=sys.stderr, flush=True)  # noqa
    # the benchmark covers the zoo's committed weights on Fashion-MNIST only
    reuse = not args.recompute and ref.kind == "zoo" and ref.checkpoint is None and \
        src.path is None
    data = report.from_benchmark(ref.name, args.sram_kb, args.benchmark_json) if reuse \
        else None
    if data is None:
        data = report.collect(ref, args.sram_kb, args.images, args.rl_seconds, log,
                              data_source=src)
    else:
        log(f"numbers from {args.benchmark_json}")
    try:
        files = report.build_report(data, out)
    except OutputDirError as e:
        raise UserError(str(e)) from e
    except OSError as e:
        raise UserError(f"cannot write the report into {out}: {e.strerror or e}") from e
    for key in ("markdown", *report.PNG_FILES, "json"):
        print(files[key])
    return 0
