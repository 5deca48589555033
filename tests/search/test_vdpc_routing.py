"""VDPC reports its routing on calibration, warns when it degenerates (most patches to the
8-bit branch), and classifies on the feature map asked for."""
import os

import numpy as np
import pytest

from helpers import REPO, requires_dataset

pytestmark = requires_dataset
NET = os.path.join(REPO, "tests", "usermodel", "net.py")


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    from tvm_quantmcu import data
    tr = data.load("train")
    path = tmp_path_factory.mktemp("d") / "d.npz"
    np.savez(path, images=tr.images_u8[:64], labels=tr.labels[:64])
    return str(path)


def _prepare(npz, **kw):
    from tvm_quantmcu import search
    params = search.SearchParams(calibration_images=64, **kw)
    return search.prepare(f"{NET}:make_avgpool", params, data_source=npz)


def test_routing_report_and_degenerate_warning(npz):
    ctx = _prepare(npz)
    r = ctx.cal.routing()
    assert r["classification_map"] == ctx.plan.first_feature_map
    assert r["calibration_images"] == 64
    assert r["calibration_patches"] == 64 * ctx.plan.grid[0] * ctx.plan.grid[1]
    assert 0.0 <= r["outlier_patch_rate"] <= 0.5 and "warning" not in r
    # a threshold most patches exceed: VDPC degenerates and says so
    low = _prepare(npz, threshold_pct=50.0).cal.routing()
    assert low["outlier_patch_rate"] > 0.5
    assert "VDPC sends" in low["warning"] and "--classification-map" in low["warning"]


def test_classification_map_option(npz):
    from tvm_quantmcu.search import SearchError
    ctx = _prepare(npz)
    maps = [l.output for l in ctx.plan.stage_layers]
    if len(maps) > 1:
        other = _prepare(npz, classification_map=maps[1])
        assert other.cal.classification_map == maps[1]
        from tvm_quantmcu import search
        pol, _ = search.quantmcu_policy(other, 0.1)
        assert pol.classification_map == maps[1]
        assert pol.params["vdpc_routing"]["classification_map"] == maps[1]
    with pytest.raises(SearchError, match="not a patch-stage feature map"):
        _prepare(npz, classification_map="no_such_tensor")
