"""`quantmcu deploy`: model → policy → C → firmware on a (emulated) board, checked over RPC."""
from __future__ import annotations

import json
import math
from pathlib import Path

from . import UserError
from .options import add_model_options, data_source, model_ref
from .outputs import atomic_dir, relocate


def register(sub) -> None:
    from ..deploy import BOARDS, DEFAULT_BOARD, DEFAULT_IMAGES, DEFAULT_POLICY
    from ..quant.policy import POLICIES
    p = sub.add_parser(
        "deploy", help="compile, build, boot and run the model on a board; check every output",
        description="Load (or search) the quantization policy, lower the model to a C library "
                    "(static arena, on-device VDPC routing), build it into the firmware of the "
                    "board's project, boot it (QEMU for qemu-*), run N test images over the "
                    "serial RPC and compare every output with the integer reference. With no "
                    "options: mbv2-fmnist, quantmcu policy, QEMU Cortex-M4, 200 images. "
                    "--board zephyr:BOARD generates a Zephyr application, builds it with west "
                    "against the Zephyr tree of --zephyr-base or $ZEPHYR_BASE and runs it the "
                    "same way: under QEMU (-icount) for boards Zephyr runs there, else flashed "
                    "with `west flash` and reached on --port. Without a tree it generates the "
                    "application and says what is missing.")
    add_model_options(p)
    p.add_argument("--board", default=DEFAULT_BOARD,
                   help=f"{', '.join(BOARDS)} or zephyr:BOARD, e.g. zephyr:nucleo_f746zg "
                        f"(default {DEFAULT_BOARD})")
    p.add_argument("--policy", default=DEFAULT_POLICY, choices=POLICIES,
                   help=f"quantization policy: the shipped one when there is one, else a fresh "
                        f"search (default {DEFAULT_POLICY})")
    p.add_argument("--policy-file", default=None, metavar="FILE",
                   help="use this saved policy (quantmcu search --out) instead")
    p.add_argument("--sram-kb", type=float, default=None,
                   help="SRAM budget for activations in KB: the shipped policy when it was made "
                        "for it, else a fresh search for it. A --policy-file carries its own "
                        "budget and plan; a different --sram-kb with it is an error")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                   help=f"test images to run on the device (default {DEFAULT_IMAGES})")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the model, project and build go (default "
                        "quantmcu-out/MODEL.POLICY.BOARD)")
    p.add_argument("--zephyr-base", default=None, metavar="DIR",
                   help="Zephyr tree for zephyr:BOARD (default $ZEPHYR_BASE); its board files "
                        "give the board's CPU, flash and RAM")
    p.add_argument("--port", default=None, metavar="URL",
                   help="serial port of a hardware Zephyr board (/dev/ttyACM0, socket://h:p)")
    p.add_argument("--tuning-db", default=None, metavar="DIR",
                   help="use the tuned schedules recorded by `quantmcu tune`")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="declare the board hung after this long without an answer (default: "
                        "scaled from the model's expected instructions, at least 5 s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from micro_project import ProjectError, ToolMissingError
    from micro_project.client import LinkError, RpcError
    from micro_project.transport import TransportError

    from .. import deploy as dep
    from .. import pipeline
    from ..codegen import UnsupportedModelError

    ref = model_ref(args, need_trained="deploy")
    src = data_source(args, ref.input_shape)
    lookup = None
    if args.tuning_db:
        from ..tune import TuningDatabaseError, kernel_lookup_from_db
        try:
            lookup = kernel_lookup_from_db(args.tuning_db, dep.BOARDS[args.board].target
                                           if args.board in dep.BOARDS else "cortex-m4")
        except TuningDatabaseError as e:
            raise UserError(f"--tuning-db {args.tuning_db}: {e}") from e
    if args.sram_kb is not None and not (math.isfinite(args.sram_kb) and args.sram_kb > 0):
        raise UserError(f"--sram-kb {args.sram_kb}: give a positive number of KB")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UserError(f"--timeout {args.timeout}: give a positive number of seconds")
    if args.board not in dep.BOARDS and not args.board.startswith("zephyr:"):
        raise UserError(f"unknown board {args.board!r}; one of {', '.join(dep.BOARDS)} or "
                        "zephyr:BOARD")
    if args.images < 1:
        raise UserError("--images must be at least 1")
    show = not (args.json or args.no_progress)
    policy_name = Path(args.policy_file).stem if args.policy_file else args.policy
    out = Path(args.out) if args.out else dep.default_out(ref.name, policy_name, args.board)
    try:
        with atomic_dir(out) as tmp:     # --out appears whole, or stays as it was
            res = dep.deploy(ref, args.board, args.policy, args.images, tmp,
                             args.policy_file, kernel_lookup=lookup,
                             bar_factory=lambda n, d: pipeline.progress(n, d, show),
                             sram_kb=args.sram_kb, zephyr_base=args.zephyr_base, port=args.port,
                             timeout=args.timeout, data_source=src)
    except (dep.DeployError, UnsupportedModelError, ToolMissingError, FileExistsError) as e:
        raise UserError(str(e)) from e
    except ProjectError as e:
        raise UserError(f"{e}") from e
    except RpcError as e:
        raise UserError(f"board {args.board}: {e}" + (
            "; if the model is only slow, give a larger --timeout"
            if isinstance(e, LinkError) else "")) from e
    except TransportError as e:
        raise UserError(f"board {args.board}: the link to the board was lost: {e}") from e
    res = relocate(res, tmp, out)
    if args.json:
        print(json.dumps(res))
    elif "match_rate" not in res:        # a Zephyr application generated (and built)
        print(f"Zephyr application for {res['board']} ({res['board_facts']}) in {res['app']} "
              f"(model {res['model_dir']}, arena {res['arena_bytes']:,} B).")
        if "image_flash_bytes" in res:
            print(f"Built: image flash {res['image_flash_bytes']:,} B of "
                  f"{res['board_flash_bytes']:,} B, RAM {res['image_ram_bytes']:,} B of "
                  f"{res['board_ram_bytes']:,} B.")
        for note in (res.get("missing"), res.get("next")):
            if note:
                print(note)
        if "image_flash_bytes" not in res:
            print("Build and flash with west:")
            for c in res["west_build_commands"]:
                print(f"    {c}")
            print(f"    {res['west_flash_command']}")
    else:
        instr = res["instructions_per_inference"]
        speed = f"{instr:,} instructions/inference" if instr else \
            f"{res.get('host_ns_per_inference', 0) / 1e6:.2f} ms/inference (host wall time)"
        if res.get("cycles_per_inference"):
            speed += f", {res['cycles_per_inference']:,} modelled Cortex-M4 cycles"
        flash = f"{res['flash_bytes']:,} B" if res["flash_bytes"] else "n/a"
        print(f"{res['model']} {res['policy']} on {res['board']}: device top-1 "
              f"{res['device_top1']:.4f} (reference {res['reference_top1']:.4f}) on "
              f"{res['images']} images, match rate {res['match_rate']:.4f}; {speed}; arena "
              f"{res['arena_bytes']:,} B; flash {flash}; outlier patches "
              f"{100 * res['outlier_patch_rate']:.1f}%; files in {res['out']}")
        print(f"link: {res['link']['summary']}")
        vs = res.get("modelled_vs_int8_patches")
        if vs and vs.get("int8_fits"):
            print(f"speedup over int8 patches at {vs['sram_kb']:g} KB (kernel cost model, "
                  f"split {vs['int8_plan'][0]} grid {vs['int8_plan'][1][0]}x"
                  f"{vs['int8_plan'][1][1]}): {vs['speedup_cycles']:.2f}x modelled cycles, "
                  f"{vs['speedup_instructions']:.2f}x instructions")
    return 0 if res.get("match_rate", 1.0) == 1.0 else 1
