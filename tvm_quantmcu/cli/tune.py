"""`quantmcu tune`: autotune a model's kernels on an emulated board (TVM meta_schedule)."""
from __future__ import annotations

import json
import math

from . import UserError
from .options import add_model_options, data_source, model_ref


def register(sub) -> None:
    from ..deploy import BOARDS, DEFAULT_BOARD, DEFAULT_POLICY
    from ..quant.policy import POLICIES
    from ..tune.api import DEFAULT_DB, DEFAULT_TRIALS
    qemu = [b for b, s in BOARDS.items() if s.template == "qemu"]
    p = sub.add_parser(
        "tune", help="autotune the model's kernels on the board (meta_schedule + XGBoost)",
        description="Time every distinct kernel of the model's generated program on the board "
                    "with its default schedule, then search the schedule knobs of the heaviest "
                    "kernels (runs per inference × instructions) with TVM meta_schedule: "
                    "an XGBoost cost model proposes candidates, each is cross-compiled into a "
                    "timing firmware, booted and timed over the RPC link (instructions under "
                    "QEMU -icount), and recorded in a JSON database that `quantmcu deploy "
                    "--tuning-db DIR` applies. --trials is the budget of the model in the "
                    "database: a re-run with the same budget measures nothing new, a larger "
                    "one continues where the last stopped.")
    add_model_options(p)
    p.add_argument("--board", default=DEFAULT_BOARD, choices=qemu,
                   help=f"board to time on (default {DEFAULT_BOARD})")
    p.add_argument("--policy", default=DEFAULT_POLICY, choices=POLICIES,
                   help=f"quantization policy whose kernels are tuned (default {DEFAULT_POLICY})")
    p.add_argument("--policy-file", default=None, metavar="FILE",
                   help="use this saved policy instead")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help=f"candidate trials for the model, heaviest kernels first "
                        f"(default {DEFAULT_TRIALS})")
    p.add_argument("--trials-per-task", type=int, default=None, metavar="N",
                   help="at most N trials per kernel (default: its whole design space)")
    p.add_argument("--db", default=DEFAULT_DB, metavar="DIR",
                   help=f"tuning database directory (default {DEFAULT_DB})")
    p.add_argument("--workers", type=int, default=None,
                   help="candidates built and timed at once (default: the CPU count)")
    p.add_argument("--tracker", default=None, metavar="HOST:PORT",
                   help="time on workers of a TVM RPC tracker (python -m "
                        "tvm_quantmcu.tune.worker) instead of local QEMU")
    p.add_argument("--key", default=None, help="device key the tracker's workers serve "
                                                "(default: the board name)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="declare the board hung after this long without an answer (default: "
                        "scaled from each kernel's instructions, at least 5 s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from micro_project import ProjectError, qemu

    from ..codegen import UnsupportedModelError
    from ..deploy import DeployError
    from ..tune import TuningDatabaseError, tune_model
    from ..tune.tuner import TuneError

    if args.trials < 0:
        raise UserError("--trials must be 0 or more")
    if args.trials_per_task is not None and args.trials_per_task < 1:
        raise UserError("--trials-per-task must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UserError(f"--timeout {args.timeout}: give a positive number of seconds")
    ref = model_ref(args, need_trained="tune")
    src = data_source(args, ref.input_shape)
    if not args.tracker and not qemu.have_toolchain():
        raise UserError("tuning needs qemu-system-arm and arm-none-eabi-gcc (apt-get install "
                        "--no-install-recommends qemu-system-arm gcc-arm-none-eabi "
                        "libnewlib-arm-none-eabi), or --tracker with remote workers")
    show = not (args.json or args.no_progress)
    try:
        res = tune_model(ref, args.board, args.policy, args.trials, args.db,
                         args.workers, args.tracker, args.key or args.board, args.seed,
                         args.trials_per_task, args.policy_file,
                         bar_factory=(lambda n, d: _bar(n, d)) if show else None,
                         timeout=args.timeout, data_source=src)
    except (DeployError, UnsupportedModelError, TuningDatabaseError, TuneError,
            ProjectError, ValueError) as e:
        raise UserError(str(e)) from e
    if args.json:
        print(json.dumps(res))
    else:
        _print(res)
    return 0


def _bar(total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="trial", leave=True, dynamic_ncols=True)


def _print(res: dict) -> None:
    print(f"{res['model']} {res['policy']} on {res['board']}: {res['new_measurements']} new "
          f"measurements ({res['failed_trials']} failed) in {res['seconds']} s; database "
          f"{res['db']}")
    print(f"{'task':<46} {'runs':>5} {'trials':>6} {'default':>10} {'best':>10} {'speedup':>7}")
    for t in res["tasks"]:
        name = t["name"] if len(t["name"]) <= 46 else t["name"][:45] + "…"
        best = t["best_instructions"]
        print(f"{name:<46} {t['runs_per_inference']:>5.2f} {t['trials']:>6} "
              f"{t['default_instructions'] or 0:>10,} {best or 0:>10,} "
              f"{(t['speedup'] or 0):>6.3f}x  {t['status']}")
    e2e = res["kernel_instructions_per_inference"]
    print(f"kernel instructions per inference: {e2e['default']:,} default → {e2e['tuned']:,} "
          f"tuned ({e2e['ratio']}×)")
    sc = res.get("kernel_scratch_bytes_max")
    if sc and sc["tuned"] != sc["default"]:
        print(f"largest kernel scratch (stack): {sc['default']:,} B default → {sc['tuned']:,} B "
              f"tuned (pixels=\"row\" keeps a row of accumulators)")
