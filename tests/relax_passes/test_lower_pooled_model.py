"""The Relax passes on an imported model with max pooling, normalisation in forward, an
explicit pad and BatchNorm outside a Sequential: the canonical module matches torch in float,
and the lowered integer module equals the simulator bit-exactly, layer by layer and patch by
patch (with a 4-bit branch)."""
import numpy as np
import pytest
import torch
from torch import nn

from tvm_quantmcu import frontend, pipeline
from tvm_quantmcu.quant import observe, quantize_input, ranges
from tvm_quantmcu.quant.policy import Policy
from tvm_quantmcu.relax_build import build, compile_vm
from tvm_quantmcu.search.simulate import Simulator

FAST_TARGET = {"kind": "llvm", "opt-level": 0}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d(2)
        self.c1 = nn.Conv2d(1, 6, 5)
        self.bn = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 7 * 7, 10)

    def forward(self, x):
        x = (x - 0.286) / 0.353
        x = nn.functional.max_pool2d(torch.relu(self.bn(self.c1(self.pad(x)))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 3, 2, 1)
        return self.fc(torch.flatten(x, 1))


@pytest.fixture(scope="module")
def imported():
    torch.manual_seed(0)
    model = Net().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2)
    mod, g = frontend.import_model(model, (1, 28, 28))
    x = np.random.default_rng(0).uniform(0, 1, (12, 1, 28, 28)).astype(np.float32)
    return model, mod, g, x


def test_canonical_module_matches_torch(imported):
    model, mod, g, x = imported
    text = mod.script()
    assert "R.nn.max_pool2d" in text and "batch_norm" not in text and "R.nn.pad" not in text
    run = frontend.build_vm(mod)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
    assert np.abs(got - want).max() <= 1e-4
    g2 = frontend.from_relax(mod)     # the canonical module reads back as the same graph
    assert [l.kind for l in g2.layers] == [l.kind for l in g.layers]
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(g.layers, g2.layers)
               if a.weight is not None)
    np.testing.assert_allclose(g2.input_offset, g.input_offset)


@pytest.mark.parametrize("split, grid, vdpc", [(None, None, False), ("l3", (2, 2), True)])
def test_lowered_module_equals_simulator(imported, split, grid, vdpc):
    model, mod, g, x = imported
    r8 = ranges(observe(g, x), "minmax")
    idx = None if split is None else [l.name for l in g.layers].index(split)
    bits_low = {"l1": 4, "l2": 4} if split else {}
    pol = Policy("test", "net", "0", idx, grid, r8, bits_low=bits_low,
                 ranges_low={t: r8[t] for t in bits_low}, vdpc=vdpc,
                 classification_map="l0" if vdpc else None,
                 threshold=0.8 * r8["l0"][1] if vdpc else None)
    imp = pipeline.Imported("net", model, mod, g, 28)
    lowered = build(imp, None, pol)
    assert "R.nn.max_pool2d" not in lowered["main"].script()
    xq = quantize_input(x)
    got, got_flags = compile_vm(lowered, FAST_TARGET).run(xq)
    want, flags = Simulator(g, pol).run(xq)
    assert np.array_equal(got, want) and np.array_equal(got_flags, flags)
    if vdpc:                # both continuations ran
        assert 0 < flags.mean() < 1
