"""The passes on what TVM's own importer gives for a model defined here (not from the zoo, its
variables named by TVM), composed with TVM's passes before and after them: planned, searched,
lowered, and run bit-exactly on the Relax VM and the host C; and the package hygiene the
passes promise (no torch needed to import them, nothing registered with TVM on import)."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from helpers import REPO, have, requires_dataset

SRAM_KB = 3            # small enough that this model needs a patch stage of several layers
LAMBDA = 0.05


def _model():
    import torch
    from torch import nn

    class Net(nn.Module):
        """Stem, a depthwise-separable residual block, a strided conv, pooling, classifier:
        BatchNorm left in (TVM's FoldBatchnormToConv2D folds it)."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8),
                                      nn.ReLU6())
            self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False),
                                    nn.BatchNorm2d(8), nn.ReLU())
            self.pw = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
            self.down = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            y = self.stem(x)
            y = y + self.pw(self.dw(y))
            return self.fc(torch.flatten(self.pool(self.down(y)), 1))

    torch.manual_seed(0)
    net = Net().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net


def _imported_by_tvm(net):
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(net, (torch.zeros(1, 1, 28, 28),))
    mod = from_exported_program(ep, keep_params_as_input=False, unwrap_unit_return_tuple=True)
    before = tvm.transform.Sequential([relax.transform.FoldBatchnormToConv2D(),
                                       relax.transform.FoldConstant(),
                                       relax.transform.CanonicalizeBindings(),
                                       relax.transform.DeadCodeElimination()])
    return before(mod)


@pytest.fixture(scope="module")
def user_flow(tmp_path_factory):
    import tvm
    from tvm import relax

    from relax_passes import AnnotateBits, LowerToQuantMCUKernels, PatchSplit, VDPCRouting
    from tvm_quantmcu import data, frontend, search

    net = _model()
    mod = _imported_by_tvm(net)
    names = {b.var.name for blk in mod["main"].body.blocks for b in blk.bindings}
    assert not any(n.startswith("l") and n[1:].isdigit() for n in names)   # TVM's names
    graph = frontend.from_relax(mod)
    images = data.load("train").images(28, 0, 256)
    ctx = search.prepare_graph(graph, images, search.SearchParams(
        sram_kb=SRAM_KB, calibration_images=256, entropy_images=64), name="user-net")
    pol, _ = search.quantmcu_policy(ctx, LAMBDA)
    lower = tvm.transform.Sequential([
        PatchSplit(ctx.plan), AnnotateBits(pol), VDPCRouting(),
        LowerToQuantMCUKernels(),
        relax.transform.DeadCodeElimination(), relax.transform.FoldConstant()])
    lowered = lower(mod)
    test = data.load("test")
    x = test.images(28, 0, 64)
    return dict(graph=graph, ctx=ctx, policy=pol, lowered=lowered, images=x,
                work=tmp_path_factory.mktemp("user_net"))


@requires_dataset
def test_tvm_importer_module_is_planned_searched_and_lowered(user_flow):
    ctx, pol = user_flow["ctx"], user_flow["policy"]
    assert ctx.plan.grid[0] * ctx.plan.grid[1] > 1 and ctx.plan.split_index >= 2
    assert pol.vdpc and pol.bits_low                        # searched: some maps below 8 bits
    kernels = [gv.name_hint for gv, f in user_flow["lowered"].functions.items()
               if gv.name_hint.startswith("qmcu_")]
    assert kernels


@requires_dataset
def test_lowered_module_runs_bit_exactly_on_the_vm(user_flow):
    from tvm_quantmcu import quant
    from tvm_quantmcu.relax_build import compile_vm
    from tvm_quantmcu.search import Simulator
    x_q = quant.quantize_input(user_flow["images"])
    ref, ref_flags = Simulator(user_flow["graph"], user_flow["policy"],
                               user_flow["ctx"].plan).run(x_q)
    vm = compile_vm(user_flow["lowered"], {"kind": "llvm", "opt-level": 0})
    out, flags = vm.run(x_q)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(flags, ref_flags)
    assert ref_flags.any() and not ref_flags.all()          # both branches taken


@requires_dataset
@pytest.mark.skipif(not have("gcc"), reason="no host C compiler")
def test_generated_c_runs_bit_exactly_on_the_host(user_flow):
    from tvm_quantmcu import quant
    from tvm_quantmcu.codegen import generate_module
    from tvm_quantmcu.codegen.host import HostModel
    from tvm_quantmcu.search import Simulator
    x_q = quant.quantize_input(user_flow["images"])
    ref, ref_flags = Simulator(user_flow["graph"], user_flow["policy"],
                               user_flow["ctx"].plan).run(x_q)
    host = HostModel(generate_module(user_flow["lowered"], user_flow["work"] / "model"))
    out, flags = host.run(np.asarray(x_q, np.uint8))
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(flags, ref_flags)


def test_importing_the_passes_needs_no_torch_and_registers_nothing():
    code = (
        "import sys; sys.modules['torch'] = None\n"     # any `import torch` now fails
        "from tvm.tirx import compilation_pipeline as cp\n"
        "before = set(cp.PIPELINE_MAP)\n"
        "import relax_passes\n"
        "assert set(cp.PIPELINE_MAP) == before, set(cp.PIPELINE_MAP) - before\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_passes_use_no_private_block_builder_methods():
    import ast
    import pathlib
    private = []
    for path in sorted(pathlib.Path(REPO, "relax_passes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") and isinstance(node.value, ast.Attribute) \
                    and node.value.attr in ("bb", "builder_"):
                private.append(f"{path.name}:{node.lineno} {node.attr}")
    assert not private
