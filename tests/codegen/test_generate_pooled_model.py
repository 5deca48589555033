"""A LeNet-style model with max pooling, normalisation in forward and Flatten → Linear: the
generated C equals the integer simulator bit-exactly, layer by layer and patch by patch, and
the integer model follows torch."""
import numpy as np
import pytest
import torch
from torch import nn

from tvm_quantmcu import frontend
from tvm_quantmcu.codegen import generate_module
from tvm_quantmcu.codegen.host import HostModel
from tvm_quantmcu.quant import observe, quantize_input, ranges
from tvm_quantmcu.quant.policy import Policy
from tvm_quantmcu.relax_build import lower
from tvm_quantmcu.search.simulate import Simulator


class LeNetMax(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 7 * 7, 24)
        self.fc2 = nn.Linear(24, 10)

    def forward(self, x):
        x = (x - 0.286) / 0.353
        x = nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 3, 2, 1)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    model = LeNetMax().eval()
    _, g = frontend.import_model(model, (1, 28, 28))
    x = np.random.default_rng(0).uniform(0, 1, (24, 1, 28, 28)).astype(np.float32)
    return model, g, x, ranges(observe(g, x), "minmax")


@pytest.mark.parametrize("split, grid, vdpc", [(None, None, False), ("l3", (2, 2), False),
                                               ("l1", (3, 2), False), ("l3", (2, 2), True)])
def test_generated_c_equals_simulator(lenet, tmp_path, split, grid, vdpc):
    model, g, x, r8 = lenet
    assert [l.kind for l in g.layers] == ["conv", "maxpool", "conv", "maxpool", "dense",
                                          "dense"]
    idx = None if split is None else [l.name for l in g.layers].index(split)
    bits_low = {"l1": 4, "l2": 4} if split else {}
    pol = Policy("test", "lenet", "0", idx, grid, r8, bits_low=bits_low,
                 ranges_low={t: r8[t] for t in bits_low}, vdpc=vdpc,
                 classification_map="l0" if vdpc else None,
                 threshold=0.8 * r8["l0"][1] if vdpc else None)
    xq = quantize_input(x).astype(np.uint8)
    gen = generate_module(lower(g, pol), tmp_path / "m")
    out, routing = HostModel(gen).run(xq)
    ref, flags = Simulator(g, pol).run(xq)
    assert np.array_equal(out, ref) and np.array_equal(routing, flags)
    if vdpc:                # both branches ran
        assert 0 < flags.mean() < 1
    if split is None:     # the int8 model follows torch
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        q = pol.qgraph8(g).acts[g.output]
        got = q.dequantize(out.astype(np.int64))
        assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9
