"""Import of the common MCU ops: the float layer graph equals torch, and the integer reference
stays close to it."""
import numpy as np
import pytest
import torch
from torch import nn

from tvm_quantmcu import frontend, graph
from tvm_quantmcu.quant import observe, quantize_graph, quantize_input, ranges, run_int


def _images(shape, n=8, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)


def _torch(model, x):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def _int8_float(g, x):
    """The integer reference at 8 bits (min/max ranges from x itself), dequantized."""
    qg = quantize_graph(g, ranges(observe(g, x), "minmax"), 8)
    out_q = qg.acts[g.output]
    return out_q.dequantize(run_int(qg, quantize_input(x)))


class FlattenNet(nn.Module):
    """conv → 7×7 map → Flatten → Linear: the Linear's weights read the map in C, H, W order."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x):
        return self.fc(self.flat(torch.relu(self.conv(x))))


def test_flatten_linear_over_7x7_map_matches_torch():
    torch.manual_seed(0)
    model = FlattenNet()
    x = _images((1, 14, 14), n=16)
    _, g = frontend.import_model(model, (1, 14, 14))
    assert g.shapes[g.layers[0].output] == (4, 7, 7)
    want = _torch(model, x)
    got = graph.run_float(g, x)
    assert np.abs(got - want).max() <= 1e-4
    assert np.abs(want).max() > 0.1
    # The integer reference follows the float graph: int8 close to fp32.
    err = np.abs(_int8_float(g, x) - want).max()
    assert err <= 0.05 * np.abs(want).max()


def test_view_flatten_matches_torch():
    class ViewNet(FlattenNet):
        def forward(self, x):
            y = torch.relu(self.conv(x))
            return self.fc(y.view(y.shape[0], -1))
    torch.manual_seed(1)
    model = ViewNet()
    x = _images((1, 14, 14))
    _, g = frontend.import_model(model, (1, 14, 14))
    assert np.abs(graph.run_float(g, x) - _torch(model, x)).max() <= 1e-4
