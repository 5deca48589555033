"""
Deploy on an emulated Cortex-M4, then on Zephyr
===============================================

This tutorial takes the trained ``mbv2-fmnist`` model with its shipped QuantMCU policy
(patch-based inference, VDPC routing, VDQS bitwidths), turns it into a bare-metal C library,
builds the firmware for QEMU's ``mps2-an386`` board (Cortex-M4), boots it, and runs test images
over the serial RPC link. Every device output is compared with the integer reference — the
golden model — so the accuracy measured on the device is the accuracy of the reference.

Then it deploys the same model as a Zephyr application on ``mps3_an547`` (Cortex-M55): built
with ``west`` and run under QEMU when a Zephyr tree is present (``ZEPHYR_BASE``), compared with
bare metal on the same core; without a tree it generates the application and says what is
missing.

Run it with ``python tutorials/02_deploy_on_qemu_and_zephyr.py`` (set ``QUANTMCU_FAST=1`` for a
quick pass on fewer images). It needs ``qemu-system-arm`` and ``arm-none-eabi-gcc``.
"""
# %%
# Step by step: the pieces ``quantmcu deploy`` chains
# ----------------------------------------------------
# A policy is bound to one checkpoint (by hash) and one patch plan. The shipped ones need no
# search; ``quantmcu search --out FILE`` makes new ones.
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from tvm_quantmcu import data, pipeline
from tvm_quantmcu.codegen import generate_module
from tvm_quantmcu.models.policies import load_policy
from tvm_quantmcu.quant import quantize_input
from tvm_quantmcu.relax_build import build

FAST = os.environ.get("QUANTMCU_FAST") == "1"
IMAGES = 4 if FAST else 100
work = Path(tempfile.mkdtemp(prefix="quantmcu-tutorial-"))

model = pipeline.load("mbv2-fmnist")
policy = load_policy("mbv2-fmnist", "quantmcu")
route = (f"VDPC threshold {policy.threshold:.3f} on {policy.classification_map}"
         if policy.vdpc else "no VDPC routing")
print(f"plan: split after layer {policy.split_index}, grid {policy.grid}; "
      f"low-bit maps {policy.bits_low}; {route}")

# %%
# Generate the C library
# ----------------------
# ``build`` runs the QuantMCU passes (PatchSplit, AnnotateBits, VDPCRouting,
# LowerToQuantMCUKernels) on the model's Relax module; ``generate_module`` turns that lowered
# module into ``qmcu_model.c/.h`` (weights as ``const``, one static arena, the patch loop with
# the on-device outlier check), one C file per kernel instance and ``model.json``.
# The arena is the real peak SRAM of activations; compare it with the planner's prediction.
lowered = build(model, None, policy)
gen = generate_module(lowered, work / "model", name="mbv2-fmnist", target="cortex-m4")
print(f"arena {gen.meta['arena_bytes']:,} B (planner predicted "
      f"{gen.meta['predicted_peak_sram_bytes']:,} B), {gen.meta['kernel_instances']} kernel "
      f"instances for {gen.meta['patches']} patches")

# %%
# Build, boot and talk to the firmware
# ------------------------------------
# The project API has the shape microTVM users know: ``generate_project``, ``build``, then a
# session that flashes (here: boots QEMU), opens the transport and checks the model hash.
import micro_project  # noqa: E402

from tvm_quantmcu.deploy import reference  # noqa: E402

project = micro_project.get_template("qemu").generate_project(
    work / "model", work / "project", {"board": "mps2-an386"})
project.build()

test = data.load("test")
x = quantize_input(test.images(64, 0, IMAGES)).astype(np.uint8)
expected, routing = reference(model.graph, policy, x)

outputs, instructions = [], []
with project.session(expected_hash=gen.hash) as client:
    print(client.info())
    for img in x:
        out, timing = client.infer(img.tobytes())
        outputs.append(np.frombuffer(out, np.uint8))
        instructions.append(project.instructions(timing.ticks_per_run))
outputs = np.array(outputs, np.int32)

match = float((outputs == expected).all(axis=1).mean())
top1 = float((outputs.argmax(1) == test.labels[:IMAGES]).mean())
print(f"device top-1 {top1:.3f} on {IMAGES} images; outputs equal the reference on "
      f"{100 * match:.0f}% of them; {np.mean(instructions):,.0f} instructions per inference; "
      f"{100 * routing.mean():.1f}% of patches took the 8-bit branch")
assert match == 1.0

# %%
# The same in one call
# --------------------
# ``tvm_quantmcu.deploy.deploy`` (and ``quantmcu deploy --json`` on the command line) chains
# the steps above and also measures flash by section.
from tvm_quantmcu.deploy import deploy  # noqa: E402

res = deploy("mbv2-fmnist", board="qemu-m4", policy="int8", images=IMAGES,
             out=work / "int8")
print(json.dumps({k: res[k] for k in ("policy", "device_top1", "match_rate",
                                      "instructions_per_inference", "arena_bytes",
                                      "flash_bytes")}, indent=1))
assert res["match_rate"] == 1.0

# %%
# The same on Zephyr
# ------------------
# ``--board zephyr:BOARD`` (``deploy(board="zephyr:BOARD")``) generates a Zephyr application
# around the same model and RPC server. The board's CPU, flash and RAM come from the board's
# own files in a Zephyr tree (``micro_project.board_table``), and the model is checked
# against them before anything is written. With a tree (``ZEPHYR_BASE`` or
# ``zephyr_base=``), it is built with ``west``; boards that Zephyr runs in QEMU (``mps2_an385``,
# ``mps2_an521``, ``mps3_an547``) boot under QEMU with ``-icount`` and are driven over the RPC
# link exactly like the bare-metal boards, their SysTick rate calibrated on the emulated
# machine so instruction counts compare with bare metal; hardware boards are flashed with
# ``west flash`` and reached on ``port=``. Without a tree it generates only and says what is
# missing.
#
# A tree for local checks: Zephyr 3.4+ (``west init`` + ``west update``, or any complete
# snapshot with its ``modules/hal/cmsis``), ``pip install west`` and
# ``zephyr/scripts/requirements-base.txt``, ``apt-get install cmake ninja-build
# device-tree-compiler``; GNU Arm Embedded is used when ``arm-none-eabi-gcc`` is on PATH.
from micro_project.templates.zephyr import zephyr_tree  # noqa: E402

tree = zephyr_tree()
zres = deploy("mbv2-fmnist", board="zephyr:mps3_an547", policy="int8", images=IMAGES,
              out=work / "zephyr-an547")
print(zres["board_facts"])
if tree is None:
    print(zres["missing"])
    for cmd in zres["west_build_commands"]:
        print("   ", cmd)
    assert (Path(zres["app"]) / "CMakeLists.txt").exists()
else:
    # the same model, the same images, bare metal on the same core (Cortex-M55, mps3-an547)
    bare = deploy("mbv2-fmnist", board="qemu-m55", policy="int8", images=IMAGES,
                  out=work / "int8-m55")
    ratio = zres["instructions_per_inference"] / bare["instructions_per_inference"]
    print(f"Zephyr on mps3_an547: match rate {zres['match_rate']}, "
          f"{zres['instructions_per_inference']:,} instructions per inference "
          f"({ratio:.3f}x bare metal); image flash {zres['image_flash_bytes']:,} B, RAM "
          f"{zres['image_ram_bytes']:,} B; counter configured at "
          f"{zres['counter_hz_configured']:,} Hz, calibrated {zres['counter_hz_calibrated']:,} Hz")
    assert zres["match_rate"] == 1.0 and abs(ratio - 1) < 0.10
