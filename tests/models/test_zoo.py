import numpy as np
import pytest
import torch

from tvm_quantmcu import models
from tvm_quantmcu.models import fold_batchnorm
from helpers import requires_trained


def test_unknown_model_lists_known_ones():
    with pytest.raises(models.UnknownModelError) as e:
        models.info("resnet-9000")
    for name in models.REGISTRY:
        assert name in str(e.value)


@pytest.mark.parametrize("name", list(models.REGISTRY))
def test_builds_and_runs(name):
    mi = models.info(name)
    m = models.get(name, pretrained=False)
    assert not m.training
    assert m(torch.zeros(1, *mi.input_shape)).shape == (1, mi.num_classes)
    uses = {type(x).__name__ for x in m.modules()}
    assert {"BatchNorm2d", "ReLU6"} <= uses


@pytest.mark.parametrize("name", ["mbv2-fmnist", "mcunet-fmnist"])
def test_fmnist_models_fit_flash(name):
    params = sum(p.numel() for p in models.get(name, pretrained=False).parameters())
    assert params <= 512 * 1024     # int8 weights ≤ 512 KB


def test_mcunet_uses_large_kernels_early():
    m = models.get("mcunet-fmnist", pretrained=False)
    ks = [c.kernel_size[0] for c in m.features[:4].modules() if isinstance(c, torch.nn.Conv2d)]
    assert 7 in ks and 5 in ks


def test_imagenet_mobilenetv2_is_the_reference_architecture():
    m = models.get("mbv2-imagenet", pretrained=False)
    params = sum(p.numel() for p in m.parameters())
    assert params == 3504872         # torchvision's mobilenet_v2() has 3,504,872


def test_mbv1_vww_is_the_mlperf_tiny_vww_shape():
    """MobileNetV1 0.25 on 96×96×3: 27 convolutions (stem + 13 depthwise-separable blocks),
    a 3×3×256 last map, 2 classes, 7.49 M MACs per inference."""
    m = models.get("mbv1-vww", pretrained=False)
    macs = []

    def count(mod, _, out):
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            macs.append(out.numel() * k)
        elif isinstance(mod, torch.nn.Linear):
            macs.append(mod.in_features * mod.out_features)
    for mod in m.modules():
        mod.register_forward_hook(count)
    x = torch.zeros(1, 3, 96, 96)
    assert m.features(x).shape == (1, 256, 3, 3)
    macs.clear()
    assert m(x).shape == (1, 2)
    assert len(macs) == 28 and sum(macs) == 7_489_664


def test_batchnorm_folding_preserves_outputs():
    m = models.get("mbv2-fmnist", pretrained=False)
    for mod in m.modules():   # non-trivial BN statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
    x = torch.rand(2, 1, 64, 64)
    want = m(x)
    folded = fold_batchnorm(m)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in folded.modules())
    assert torch.allclose(folded(x), want, atol=1e-5)


def test_corrupt_checkpoint_is_named(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(models.CheckpointError) as e:
        models.get("mbv2-fmnist", checkpoint=str(bad))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["mbv2-fmnist", "mcunet-fmnist"])
def test_checkpoint_recorded_accuracy(name):
    met = models.recorded_metrics(name)
    if not met:
        pytest.skip(f"{name} not trained yet")
    assert met["test_images"] == 10000
    assert met["test_top1"] >= (0.92 if name == "mbv2-fmnist" else 0.91)
