"""
Deploy on an emulated Cortex-M4 and generate a Zephyr application
=================================================================

This tutorial takes the trained ``mbv2-fmnist`` model with its shipped QuantMCU policy
(patch-based inference, VDPC routing, VDQS bitwidths), turns it into a bare-metal C library,
builds the firmware for QEMU's ``mps2-an386`` board (Cortex-M4), boots it, and runs test images
over the serial RPC link. Every device output is compared with the integer reference — the
golden model — so the accuracy measured on the device is the accuracy of the reference.

Then it generates a Zephyr application for a real board, ``nucleo_f746zg`` (Cortex-M7), and
prints the ``west`` commands that build and flash it.

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
from tvm_quantmcu.codegen import generate
from tvm_quantmcu.models.policies import load_policy
from tvm_quantmcu.quant import quantize_input

FAST = os.environ.get("QUANTMCU_FAST") == "1"
IMAGES = 4 if FAST else 100
work = Path(tempfile.mkdtemp(prefix="quantmcu-tutorial-"))

model = pipeline.load("mbv2-fmnist")
policy = load_policy("mbv2-fmnist", "quantmcu")
print(f"plan: split after layer {policy.split_index}, grid {policy.grid}; "
      f"low-bit maps {policy.bits_low}; VDPC threshold {policy.threshold:.3f} on "
      f"{policy.classification_map}")

# %%
# Generate the C library
# ----------------------
# ``generate`` writes ``qmcu_model.c/.h`` (weights as ``const``, one static arena, the patch
# loop with the on-device outlier check), one C file per kernel instance and ``model.json``.
# The arena is the real peak SRAM of activations; compare it with the planner's prediction.
gen = generate(model.graph, policy, work / "model", name="mbv2-fmnist", target="cortex-m4")
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
from tvm_quantmcu.deploy import deploy, zephyr_app  # noqa: E402

res = deploy("mbv2-fmnist", board="qemu-m4", policy="int8", images=IMAGES,
             out=work / "int8")
print(json.dumps({k: res[k] for k in ("policy", "device_top1", "match_rate",
                                      "instructions_per_inference", "arena_bytes",
                                      "flash_bytes")}, indent=1))
assert res["match_rate"] == 1.0

# %%
# A Zephyr application for a real board
# -------------------------------------
# The generated application uses only Zephyr's polling UART and cycle-counter APIs and its
# minimal C library. Board names are accepted in the 3.x and 4.x spellings.
app = zephyr_app("mbv2-fmnist", "nucleo_f746zg", policy="quantmcu", out=work / "zephyr")
print("Zephyr application:", app["app"])
for cmd in app["west_build_commands"] + [app["west_flash_command"]]:
    print("   ", cmd)
assert (Path(app["app"]) / "CMakeLists.txt").exists()
