"""
Add the QuantMCU passes to your own Relax pipeline
==================================================

You have a PyTorch CNN and a Relax pipeline of your own. This tutorial defines a small CNN
(yours would go here), trains it for a moment, searches a QuantMCU policy for it, imports it
into Relax, then adds the four QuantMCU passes to a ``tvm.transform.Sequential``:

1. ``PatchSplit`` runs the first layers once per patch of a p×q grid (MCUNetV2's patch-based
   inference: one private function per patch, windows with halo, tiles concatenated back);
2. ``AnnotateBits`` records, per patch branch and per feature map, the bitwidths a QuantMCU
   policy chose (an all-8-bit branch and a low-bit branch);
3. ``VDPCRouting`` inserts the runtime outlier check of VDPC: a ``relax.If`` that sends a patch
   whose classification map holds outliers to the all-8-bit branch;
4. ``LowerToQuantMCUKernels`` replaces the float ops with integer TIR kernels at those bits.

It prints the TVMScript at two points and checks the results: the routed float module still
computes the original network, and the lowered integer module equals the integer reference
(the golden model the device is tested against) bit for bit, routing decisions included.

Run it with ``python tutorials/01_add_quantmcu_passes.py`` (``QUANTMCU_FAST=1``: fewer images).
"""
# %%
# Your model
# ----------
# Any ``torch.nn.Module`` of the common MCU ops: convolutions (depthwise too), ReLU/ReLU6,
# pooling, residual adds, flatten and linear layers. This one takes 28×28 grey images and is
# trained here for a moment on Fashion-MNIST; a model you trained elsewhere works the same
# (on the command line: ``--model net.py:make --checkpoint net.pt`` or ``--model net.pt2``).
import os

import numpy as np
import torch
import torch.nn.functional as F
import tvm
from torch import nn
from tvm import relax

from relax_passes import (AnnotateBits, LowerToQuantMCUKernels, PatchSplit, VDPCRouting,
                          patch_functions)
from tvm_quantmcu import compile_vm, data, pipeline, search
from tvm_quantmcu.frontend import from_relax, to_relax
from tvm_quantmcu.patch import analyze
from tvm_quantmcu.quant import quantize_input
from tvm_quantmcu.search.simulate import Simulator

FAST = os.environ.get("QUANTMCU_FAST") == "1"
IMAGES = 8 if FAST else 100
INPUT_SHAPE = (1, 28, 28)


class MyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16), nn.ReLU6(),   # depthwise
            nn.Conv2d(16, 32, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.features(x))


torch.manual_seed(0)
torch_model = MyNet()
train = data.load("train")
n_train = 2000 if FAST else 20000
x_train = torch.from_numpy(train.images(28, 0, n_train))
y_train = torch.from_numpy(train.labels[:n_train])
opt = torch.optim.Adam(torch_model.parameters(), 3e-3)
for epoch in range(1 if FAST else 3):
    for idx in torch.randperm(n_train).split(64):
        opt.zero_grad()
        F.cross_entropy(torch_model(x_train[idx]), y_train[idx]).backward()
        opt.step()
torch_model.eval()

# %%
# Import it into Relax
# --------------------
# ``to_relax`` is ``torch.export`` + ``from_exported_program`` with BatchNorm folded into the
# convolutions; ``from_relax`` reads the layer graph the planner and the search work on.
mod = to_relax(torch_model, INPUT_SHAPE)
graph = from_relax(mod)
print(f"{len(graph.layers)} layers; first: {graph.layers[0].name} ({graph.layers[0].op})")

# %%
# A policy and its patch plan
# ---------------------------
# The search plans patch-based inference for an SRAM budget, calibrates on a few hundred
# training images, and chooses per-feature-map bit widths (VDQS) for the low-bit branch and
# the VDPC threshold (``quantmcu search --out policy.json`` does the same from the shell).
model = pipeline.resolve(torch_model, input_shape=INPUT_SHAPE)
ctx = search.prepare(model, search.SearchParams(sram_kb=6, calibration_images=256))
policy, _ = search.make_policy(ctx, "quantmcu", lam=0.2)
plan = analyze(graph, policy.split_index, policy.grid)
print(f"split after {plan.split_layer}, grid {plan.grid}, low-bit maps {policy.bits_low}, "
      f"classification map {policy.classification_map}")

# %%
# Your pipeline, with the QuantMCU passes in it
# ---------------------------------------------
# The passes are ordinary module passes: they compose with others in a ``Sequential`` and
# are visible to ``PassContext`` instruments. Here an instrument records what ran.


@tvm.instrument.pass_instrument
class PrintPasses:
    def __init__(self):
        self.names = []

    def run_before_pass(self, mod, info):
        self.names.append(info.name)


routing = tvm.transform.Sequential([
    relax.transform.CanonicalizeBindings(),     # any pass of your own pipeline
    PatchSplit(plan),
    AnnotateBits(policy),
    VDPCRouting(),                              # reads the policy from the module
], name="MyPipelineWithQuantMCU")
recorder = PrintPasses()
with tvm.transform.PassContext(opt_level=3, instruments=[recorder]):
    routed = routing(mod)
print("passes run:", [n for n in recorder.names if not n.startswith("relax.")] or recorder.names)

first = sorted(patch_functions(routed).values())[0]
print(f"\n--- {first} (the branch of one patch, with the VDPC routing) ---")
print(routed[first].script()[:3000])

# %%
# The routed float module still computes the original network
# -----------------------------------------------------------
# Both continuations of a patch hold the same float ops (their bits are annotations so far),
# so whatever the routing, the logits are the torch model's.
test = data.load("test")
images = test.images(28, 0, IMAGES)
vm = relax.VirtualMachine(tvm.compile(routed, target=tvm.target.Target({"kind": "llvm"})),
                          tvm.cpu())
with torch.no_grad():
    want = torch_model(torch.from_numpy(images)).numpy()
for i in range(IMAGES):
    logits, flags = vm["main"](tvm.runtime.tensor(images[i:i + 1]))
    np.testing.assert_allclose(logits.numpy()[0], want[i], rtol=0, atol=1e-4)
print(f"routed float module == torch on {IMAGES} images (|error| <= 1e-4)")

# %%
# Lower to integer kernels and check against the golden model
# -----------------------------------------------------------
# The lowering reads everything from the module: the widths AnnotateBits wrote on each
# function, the ranges and routing on ``main``, the weights from the float layers PatchSplit
# kept (``relax_passes.policy_of`` / ``relax_passes.layer_graph`` show what it reads).
# The lowered ``main`` takes one quantized image (H×W×C uint8, what the device receives) and
# returns the quantized logits and one routing flag per patch.
lowered = LowerToQuantMCUKernels()(routed)
print(f"\n--- lowered main ---\n{lowered['main'].script()[:2000]}")

x_q = quantize_input(images)
got, got_flags = compile_vm(lowered, {"kind": "llvm", "opt-level": 0}).run(x_q)
ref, ref_flags = Simulator(graph, policy).run(x_q)
assert (got == ref).all() and (got_flags == ref_flags).all()
top1 = float((got.argmax(1) == test.labels[:IMAGES]).mean())
torch_top1 = float((want.argmax(1) == test.labels[:IMAGES]).mean())
print(f"lowered module == integer reference on {IMAGES} images (logits and "
      f"{got_flags.size} routing decisions, {int(got_flags.sum())} to the 8-bit branch); "
      f"top-1 {top1:.3f} (fp32 torch {torch_top1:.3f})")

# %%
# One call
# --------
# ``tvm_quantmcu.build(model, plan, policy)`` runs import → PatchSplit → AnnotateBits →
# VDPCRouting → LowerToQuantMCUKernels; ``quantmcu deploy`` goes on to C and firmware
# (tutorial 02).

# %%
# Your own pass changes a width; the firmware follows the module
# --------------------------------------------------------------
# After ``AnnotateBits`` the policy lives in the module: every later pass, the C generator
# and the integer reference read it from there. A pass of your own can change it. This one
# puts one low-bit feature map back at 8 bits in every patch branch; the pipeline around it
# has TVM's own passes before and after ours. ``generate_module`` writes the C library from
# the lowered module, and the firmware runs on QEMU's Cortex-M4 (mps2-an386).
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from relax_passes import ATTR_BITS_LOW, layer_graph, policy_of  # noqa: E402
from tvm_quantmcu.codegen import generate_module  # noqa: E402

widened = sorted(policy.bits_low, key=list(policy.ranges8).index)[0]


@tvm.transform.module_pass(opt_level=0, name="KeepOneMapAt8Bits")
def keep_one_map_at_8_bits(module, _ctx):
    out = module.clone()
    for gv, func in module.functions.items():
        if isinstance(func, relax.Function) and func.attrs is not None \
                and ATTR_BITS_LOW in func.attrs:
            bits = {str(k): int(v) for k, v in func.attrs[ATTR_BITS_LOW].items()}
            out[gv] = func.with_attr(ATTR_BITS_LOW, {**bits, widened: 8})
    return out


pipeline_with_user_pass = tvm.transform.Sequential([
    relax.transform.CanonicalizeBindings(),
    PatchSplit(plan), AnnotateBits(policy), keep_one_map_at_8_bits,
    VDPCRouting(), LowerToQuantMCUKernels(),
    relax.transform.DeadCodeElimination(),
], name="MyPipelineWithAWidthOfMyOwn")
changed = pipeline_with_user_pass(mod)
print(f"\n{widened}: {policy.bits_low[widened]} bits in the policy, "
      f"{policy_of(changed).act_bits(widened)} in the module")

if shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"):
    import micro_project

    work = Path(tempfile.mkdtemp(prefix="quantmcu-tutorial01-"))
    gen = generate_module(changed, work / "model", target="cortex-m4")
    project = micro_project.get_template("qemu").generate_project(
        work / "model", work / "project", {"board": "mps2-an386"})
    project.build()
    device_images = 4 if FAST else 20
    x_dev = quantize_input(test.images(28, 0, device_images)).astype(np.uint8)
    # the golden model of the changed module, built from that module alone
    expected, _ = Simulator(layer_graph(changed), policy_of(changed)).run(x_dev)
    original, _ = Simulator(graph, policy).run(x_dev)
    outputs = []
    with project.session(expected_hash=gen.hash) as client:
        for img in x_dev:
            out, _timing = client.infer(img.tobytes())
            outputs.append(np.frombuffer(out, np.uint8).astype(np.int32))
    outputs = np.array(outputs)
    match_rate = float((outputs == expected).all(axis=1).mean())
    print(f"firmware of the changed module on QEMU Cortex-M4: match_rate {match_rate} against "
          f"its integer reference on {device_images} images; outputs differ from the "
          f"unchanged policy's on {int((expected != original).any(axis=1).sum())} of them")
    assert match_rate == 1.0
else:
    print("qemu-system-arm / arm-none-eabi-gcc not installed: firmware step skipped")
