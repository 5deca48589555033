"""PatchSplit: the per-patch module computes what the original computes (Relax VM, fp32)."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

from relax_passes import PatchSplit, PatchSplitError, branch_feature_maps, patch_functions
from tvm_quantmcu import data, frontend, models
from tvm_quantmcu.patch import analyze


@functools.lru_cache(maxsize=None)
def zoo_module(name: str):
    """Relax module + layer graph of a zoo model whose random weights give O(1) activations:
    BatchNorm statistics are set from 32 images and the classifier is scaled up, so that an
    absolute error bound of 1e-5 on the logits means something."""
    mi = models.info(name)
    model = models.get(name, pretrained=False)
    x = torch.from_numpy(images(name, 32, start=2000))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None                  # cumulative average over the batch
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(x)
        model.classifier.weight.mul_(100.0)
    model.eval()
    return frontend.import_model(model, mi.input_shape)


def images(name: str, n: int, start: int = 0) -> np.ndarray:
    c, h, _ = models.info(name).input_shape
    try:
        x = data.load("test").images(h, start, start + n)
    except data.DatasetMissingError:
        pytest.skip("Fashion-MNIST (dataset-fashion-mnist) is not installed")
    return np.repeat(x, c, axis=1).astype(np.float32)


def assert_equivalent(mod, new, x, tol=1e-5):
    ref, got = frontend.build_vm(mod), frontend.build_vm(new)
    worst, scale = 0.0, 0.0
    for i in range(len(x)):
        a, b = ref(x[i:i + 1]), got(x[i:i + 1])
        worst = max(worst, float(np.abs(a - b).max()))
        scale = max(scale, float(np.abs(a).max()))
    assert scale > 1e-2, "logits too small for the check to mean anything"
    assert worst <= tol, f"max |error| {worst} > {tol}"


def test_structure_and_equivalence():
    mod, g = zoo_module("mbv2-fmnist")
    plan = analyze(g, "l12", (3, 2))
    new = tvm.transform.Sequential([PatchSplit(plan), relax.transform.FoldConstant()])(mod)
    branches = patch_functions(new)
    assert sorted(branches) == [(r, c) for r in range(3) for c in range(2)]
    f = new[branches[(1, 0)]]
    assert [int(i) for i in f.attrs["quantmcu.patch"]] == [1, 0]
    assert [int(i) for i in f.attrs["quantmcu.window"]] == plan.patch(1, 0).window.to_list()
    assert list(f.attrs["quantmcu.layers"])[0] == plan.first_feature_map
    text = new.script()
    assert "R.concat" in text and "R.strided_slice" in text and "R.nn.pad" in text
    fmaps = branch_feature_maps(f)
    assert list(fmaps) == [l.name for l in plan.stage_layers]
    first = fmaps[plan.first_feature_map]
    win = plan.patch(1, 0).regions[plan.first_feature_map]
    assert [int(d) for d in first.ty.shape] == [1, 8, win.height, win.width]
    assert str(new["main"].attrs["quantmcu.split_layer"]) == "l12"
    ops = [b.value.op.name for blk in f.body.blocks for b in blk.bindings
           if isinstance(b.value, relax.Call) and hasattr(b.value.op, "name")]
    assert ops.count("relax.nn.conv2d") == sum(l.op == "conv2d" for l in plan.stage_layers)
    for blk in f.body.blocks:
        for b in blk.bindings:
            if isinstance(b.value, relax.Call) and getattr(b.value.op, "name", "") == \
                    "relax.nn.conv2d":
                assert [int(p) for p in b.value.attrs.padding] == [0, 0, 0, 0]
    assert_equivalent(mod, new, images("mbv2-fmnist", 5))


def test_attr_padding_and_plan_mapping():
    mod, g = zoo_module("mbv2-fmnist")
    new = PatchSplit({"split_layer": "l4", "grid": [2, 3]}, pad_mode="attr")(mod)
    assert len(patch_functions(new)) == 6 and "R.nn.pad" not in new.script()
    assert_equivalent(mod, new, images("mbv2-fmnist", 3))


def test_rejects_bad_plans():
    mod, g = zoo_module("mbv2-fmnist")
    other = analyze(zoo_module("mcunet-fmnist")[1], "l3", (2, 2))
    with pytest.raises(Exception, match="different layer graph"):
        PatchSplit(other)(mod)
    with pytest.raises(Exception, match="crosses"):
        PatchSplit({"split_layer": "l14", "grid": [2, 2]})(mod)
    with pytest.raises(ValueError, match="pad_mode"):
        PatchSplit(analyze(g, "l4", (2, 2)), pad_mode="zeros")
    assert issubclass(PatchSplitError, ValueError)


ZOO_PLANS = {
    "mbv2-fmnist": [("l12", (3, 4)), ("l4", (3, 2)), ("l9", (5, 5))],
    "mcunet-fmnist": [("l13", (4, 4)), ("l3", (2, 3)), ("l10", (3, 5))],
    "mbv2-imagenet": [("l12", (4, 4)), ("l5", (2, 3)), ("l23", (3, 3))],
    "mcunet-320kb": [("l12", (4, 4)), ("l9", (3, 2)), ("l2", (5, 5))],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO_PLANS))
def test_zoo_equivalence_50_images(name):
    mod, g = zoo_module(name)
    x = images(name, 50)
    for split, grid in ZOO_PLANS[name]:
        assert_equivalent(mod, PatchSplit(analyze(g, split, grid))(mod), x)


# ---------------------------------------------------------------------------------------------
# Random chains through the pass: conv / depthwise / dilated conv / pooling / residual blocks


class _Residual(torch.nn.Module):
    def __init__(self, c: int, k: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, k, 1, (k - 1) // 2)

    def forward(self, x):
        return x + torch.relu(self.conv(x))


def random_chain(seed: int):
    """(torch module, input shape, split index, grid) of a random stage + one layer after it."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(8, 25)), int(rng.integers(8, 25))
    shape = (c, h, w)
    mods, n_layers = [], 0
    for _ in range(int(rng.integers(2, 6))):
        kind = rng.choice(["conv", "dw", "pool", "res"])
        k, s = int(rng.integers(1, 8)), int(rng.integers(1, 3))
        d = int(rng.integers(1, 3)) if k > 1 and kind != "pool" else 1
        ph, pw = (int(rng.integers(0, d * (k - 1) // 2 + 1)) for _ in range(2))
        if kind == "pool":
            k = min(k, 3)
            ph, pw = min(ph, k // 2), min(pw, k // 2)
        if min(h + 2 * ph, w + 2 * pw) < d * (k - 1) + 1:
            continue
        act = [torch.nn.Identity(), torch.nn.ReLU(), torch.nn.ReLU6()][int(rng.integers(0, 3))]
        if kind == "conv":
            co = int(rng.integers(1, 5))
            mods += [torch.nn.Conv2d(c, co, k, s, (ph, pw), d), act]
            c = co
        elif kind == "dw":
            mods += [torch.nn.Conv2d(c, c, k, s, (ph, pw), d, groups=c), act]
        elif kind == "pool":
            mods.append(torch.nn.AvgPool2d(k, s, (ph, pw)))
        else:
            mods.append(_Residual(c, int(rng.choice([1, 3, 5]))))
            s, k, d, ph, pw = 1, 1, 1, 0, 0
            n_layers += 1                      # the residual's conv, then the add below
        n_layers += 1
        h = (h + 2 * ph - d * (k - 1) - 1) // s + 1
        w = (w + 2 * pw - d * (k - 1) - 1) // s + 1
    if n_layers == 0:
        mods.append(torch.nn.Conv2d(c, 2, 3, 1, 1))
        n_layers = 1
    mods.append(torch.nn.Conv2d(c, 3, 1))
    grid = (int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1)))
    if grid == (1, 1) and h > 1:
        grid = (2, 1)
    model = torch.nn.Sequential(*mods).eval()
    return model, shape, n_layers - 1, grid


def check_random_chain(seed: int):
    model, x_shape, split, grid = random_chain(seed)
    mod, g = frontend.import_model(model, x_shape)
    assert len(g.layers) == split + 2
    plan = analyze(g, split, grid)
    new = PatchSplit(plan)(mod)
    x = np.random.default_rng(seed).random((2, 1) + x_shape).astype(np.float32)
    ref, got = frontend.build_vm(mod), frontend.build_vm(new)
    for xi in x:
        np.testing.assert_allclose(got(xi), ref(xi), rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", [3, 11])
def test_random_chain(seed):
    check_random_chain(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_random_chains_many(seed):
    check_random_chain(seed)
