"""torch → Relax → (Relax VM, layer graph) agree with torch."""
import numpy as np
import pytest
import torch

from tvm_quantmcu import data, frontend, graph, models
from helpers import requires_dataset, trained


@requires_dataset
@pytest.mark.parametrize("name", ["mbv2-fmnist", "mcunet-fmnist"])
def test_relax_vm_matches_torch_on_100_test_images(name):
    if not trained(name):
        pytest.skip(f"{name} has no trained checkpoint yet "
                    f"(python -m tvm_quantmcu.models.train --model {name})")
    m = models.get(name)
    mod, g = frontend.import_model(m, models.info(name).input_shape)
    run = frontend.build_vm(mod)
    x = data.load("test").images(64, 0, 100)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    got = np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
    assert np.abs(got - want).max() <= 1e-4
    assert np.abs(graph.run_float(g, x) - want).max() <= 1e-4
    assert np.abs(want).max() > 0.1       # a real signal, not zeros


def test_graph_of_mbv2_has_the_expected_layers():
    mod, g = frontend.import_model(models.get("mbv2-fmnist", pretrained=False), (1, 64, 64))
    kinds = [l.kind for l in g.layers]
    assert kinds[0] == "conv" and kinds[-2:] == ["avgpool", "dense"]
    assert kinds.count("add") == 3 and kinds.count("depthwise") == 9
    assert all(l.bias is not None for l in g.layers if l.op in ("conv2d", "dense"))
    assert g.shapes[g.output] == (10, 1, 1)
    relu6 = [l for l in g.layers if l.act == "relu6"]
    assert len(relu6) == 1 + 9 + 9 + 1    # stem, depthwise, expansions, head
    assert "conv2d" in mod.script()


def test_imagenet_mobilenetv2_imports():
    mod, g = frontend.import_model(models.get("mbv2-imagenet", pretrained=False), (3, 224, 224))
    assert g.shapes[g.layers[0].output] == (32, 112, 112)
    assert sum(g.macs(l) for l in g.layers) == 300_774_272   # 300.8 M MACs (the paper's 300 M)


def test_unsupported_op_names_the_torch_module_the_op_and_a_way_out():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.act = torch.nn.GELU()

        def forward(self, x):
            return self.act(self.conv(x))

    class GeluNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(Block())

        def forward(self, x):
            return self.features(x).mean((2, 3))
    with pytest.raises(frontend.UnsupportedOpError) as e:
        frontend.import_model(GeluNet(), (1, 8, 8))
    msg = str(e.value)
    assert "features.0.act (GELU)" in msg and "'gelu'" in msg
    assert "Supported:" in msg and "max/avg pooling" in msg and "Replace it" in msg
