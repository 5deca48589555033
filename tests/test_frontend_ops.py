"""Import of the common MCU ops: the float layer graph equals torch, and the integer reference
stays close to it."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
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


def test_self_check_catches_a_wrong_flattening(monkeypatch):
    torch.manual_seed(2)
    model = FlattenNet()
    monkeypatch.setattr(frontend, "torch_flatten_to_nhwc", lambda w, chw: w)   # the old bug
    with pytest.raises(frontend.ImportCheckError, match=r"first diverging layer: l1 \(dense"):
        frontend.import_model(model, (1, 14, 14))


class CommonOpsNet(nn.Module):
    """Normalisation in forward, an explicit pad, BatchNorm outside a Sequential, Hardtanh,
    max pooling with padding, a concat, F.pad before an average pool, dropout, identity."""
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 1, 1, 1))
        self.c1 = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.Hardtanh(0, 6)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 4, 1)
        self.drop = nn.Dropout(0.2)
        self.id = nn.Identity()
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x):
        x = (x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / 0.25
        x = self.act(self.bn(self.c1(self.pad(x))))
        x = F.max_pool2d(x, 3, 2, 1)
        y = torch.cat([F.relu(self.c2(x)), self.c3(x)], 1)
        y = F.avg_pool2d(F.pad(y, (0, 1, 0, 1)), 2)
        return self.fc(torch.flatten(self.drop(self.id(y)), 1))


def _with_statistics(model):
    torch.manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 2)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def test_common_mcu_ops_import_and_match_torch():
    model = _with_statistics(CommonOpsNet())
    x = _images((3, 16, 16), n=16)
    _, g = frontend.import_model(model, (3, 16, 16))
    assert [l.kind for l in g.layers] == ["conv", "maxpool", "conv", "pointwise", "concat",
                                          "avgpool", "dense"]
    first = g.layers[0]
    assert first.padding == (1, 1, 1, 1) and first.act == "relu6"
    assert g.layers[1].padding == (1, 1, 1, 1) and g.layers[5].padding == (0, 0, 1, 1)
    np.testing.assert_allclose(g.input_offset, [0.4, 0.5, 0.6], atol=1e-6)
    want = _torch(model, x)
    assert np.abs(graph.run_float(g, x) - want).max() <= 1e-4
    assert np.abs(_int8_float(g, x) - want).max() <= 0.05 * np.abs(want).max()


@pytest.mark.parametrize("why, forward", [
    ("zero-padded map", lambda m, x: F.max_pool2d(F.pad(m.c(x), (1, 1, 1, 1)), 2)),
    ("multiplying or dividing a feature map", lambda m, x: m.c(x).mean((2, 3)) * 2.0),
    ("BatchNorm", lambda m, x: m.bn(torch.relu(m.c(x))).mean((2, 3))),
])
def test_unsupported_patterns_are_named(why, forward):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return forward(self, x)
    with pytest.raises(frontend.UnsupportedOpError, match=why):
        frontend.import_model(Net().eval(), (1, 8, 8))


def test_cli_exits_2_naming_the_module_and_writes_nothing(monkeypatch, tmp_path, capsys):
    from tvm_quantmcu import models
    from tvm_quantmcu.cli import main

    class GeluHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3)
            self.head = nn.Sequential(nn.GELU())

        def forward(self, x):
            return self.head(self.stem(x)).mean((2, 3))
    monkeypatch.setattr(models, "get", lambda name, **kw: GeluHead())
    plot = tmp_path / "mem.png"
    assert main(["plan", "--model", "mbv2-fmnist", "--sram-kb", "64", "--plot", str(plot)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "head.0 (GELU)" in err and "'gelu'" in err
    assert not plot.exists()


def test_common_idioms_match_torch():
    """ReLU6 and in-place ReLU modules, a conv without bias before BatchNorm, global pooling
    with keepdim then flatten, a residual add."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.act = nn.ReLU6()
            self.c2 = nn.Conv2d(8, 8, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            y = self.act(self.bn1(self.c1(x)))
            y = self.relu(self.c2(y) + y)
            return self.fc(torch.flatten(y.mean((2, 3), keepdim=True), 1))
    model = _with_statistics(Net())
    x = _images((3, 12, 12))
    _, g = frontend.import_model(model, (3, 12, 12))
    assert [l.kind for l in g.layers] == ["conv", "conv", "add", "avgpool", "dense"]
    assert np.abs(graph.run_float(g, x) - _torch(model, x)).max() <= 1e-4


class _ConvBnNoAct(nn.Module):
    """A BatchNorm that is an attribute of its own, right after a conv, with no activation."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.bn(self.conv(x)), 1))


def test_layer_values_of_an_unfolded_batchnorm_are_tensors():
    torch.manual_seed(0)
    model = _ConvBnNoAct().eval()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    mod = frontend.export_relax(model, (1, 6, 6), fold_bn=False)
    x = np.random.default_rng(0).random((1, 1, 6, 6)).astype(np.float32)
    values = frontend.relax_layer_values(mod, x)
    with torch.no_grad():
        conv_bn = model.bn(model.conv(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(values[0], conv_bn, atol=1e-5)
