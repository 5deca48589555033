"""Patch analysis: windows, border padding, MACs and peak SRAM against hand calculations."""
from __future__ import annotations

import numpy as np
import pytest

from tvm_quantmcu.graph import Graph, Layer
from tvm_quantmcu.patch import (Box, SplitError, analyze, check_split, layer_window,
                                layerwise_profile, split_candidates, split_ranges, window_1d)


def conv(name, inp, cin, cout, k, s=1, p=None, groups=1, dil=1):
    p = (k - 1) // 2 * dil if p is None else p
    w = np.ones((cout, cin // groups, k, k), np.float32)
    return Layer(name, "conv2d", [inp], name, weight=w, stride=(s, s), padding=(p, p, p, p),
                 dilation=(dil, dil), groups=groups)


def test_split_ranges_uneven():
    assert split_ranges(7, 3) == [(0, 2), (2, 4), (4, 7)]
    assert split_ranges(8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(ValueError):
        split_ranges(3, 4)


def test_window_1d_border_and_interior():
    # k3 s2 p1 over 8 inputs → 4 outputs; output rows [0,2) read rows -1..3
    assert window_1d(0, 2, 3, 2, 1, 1, 8) == (0, 4, 1, 0)
    assert window_1d(2, 4, 3, 2, 1, 1, 8) == (3, 8, 0, 0)   # last row 7, the bottom pad unused
    # dilation 2, k3, pad 2: output row 5 of 6 reads 3, 5, 7 → 7 is outside
    assert window_1d(5, 6, 3, 1, 2, 2, 6) == (3, 6, 0, 2)


def test_layer_window_asymmetric_padding():
    l = Layer("c", "conv2d", ["x"], "c", weight=np.ones((1, 1, 3, 5), np.float32),
              stride=(1, 2), padding=(0, 2, 2, 1))
    box, pad = layer_window(l, Box(0, 3, 0, 2), (4, 6))
    assert box == Box(0, 4, 0, 5) and pad == (0, 2, 1, 0)


def small_graph():
    """stem k3 s2 → dw k3 → pw → residual add → pool 2×2 s2 → pw (8×8 → 2×2)."""
    layers = [conv("a", "input", 1, 4, 3, 2), conv("b", "a", 4, 4, 3, groups=4),
              conv("c", "b", 4, 4, 1), Layer("d", "add", ["a", "c"], "d"),
              Layer("e", "avgpool", ["d"], "e", kernel=(2, 2), stride=(2, 2)),
              conv("f", "e", 4, 2, 1)]
    return Graph("input", (1, 8, 8), layers, "f")


def test_small_graph_windows_by_hand():
    g = small_graph()
    plan = analyze(g, "e", (2, 1))
    top, bottom = plan.patch(0, 0), plan.patch(1, 0)
    # tile rows [0,1) of e ← d rows [0,2) ← c,b rows [0,2) ← a rows [0,3) (dw halo, union with
    # the add's [0,2)) ← input rows [0,6) (k3 s2 p1: rows -1..5, one border row padded)
    assert top.tile == Box(0, 1, 0, 2)
    assert top.regions["d"] == Box(0, 2, 0, 4) and top.regions["a"] == Box(0, 3, 0, 4)
    assert top.window == Box(0, 6, 0, 8)
    assert top.layer("a").padding == (1, 1, 0, 0)
    assert top.layer("b").padding == (1, 1, 0, 1)
    assert bottom.regions["a"] == Box(1, 4, 0, 4) and bottom.window == Box(1, 8, 0, 8)
    assert bottom.layer("a").padding == (0, 1, 0, 0)     # bottom pad row is never read
    # MACs: a: 3 rows×4 cols×4ch×9, b: 2×4×4×9, c: 2×4×4×4 per patch
    assert top.macs == 3 * 4 * 4 * 9 + 2 * 4 * 4 * 9 + 2 * 4 * 16
    assert plan.macs_patch_stage == 2 * top.macs
    assert plan.macs_stage_layerwise == 4 * 4 * 4 * 9 * 2 + 4 * 4 * 16
    assert plan.input_patch_hw == (7, 8)


def test_small_graph_memory_by_hand():
    g = small_graph()
    # layer-by-layer (8-bit): a: 64+64, b: 64+64 (a is b's input), c: b + c + a kept for the add,
    # d: a + c + d, e: 64+16, f: 16+8
    assert layerwise_profile(g) == [128, 128, 192, 192, 80, 24]
    # 4-bit packing: 4 channels → 2 bytes per pixel, the 1-channel input → 1 byte per pixel
    assert layerwise_profile(g, 4) == [64 + 32, 64, 96, 96, 40, 12]
    plan = analyze(g, "e", (2, 1))
    # top patch: a: window 6×8 + a 3×4×4, + full e (16 B) ...; the bottom patch reads 7 rows
    bottom = [56 + 48, 48 + 32, 48 + 32 + 32, 48 + 32 + 32, 32]
    assert plan.stage_profile == [b + 16 for b in bottom]
    assert plan.peak_sram_patch_bytes == 128
    assert plan.peak_sram_layerwise_bytes == 192


def test_split_rules():
    g = small_graph()
    # after b or c the skip tensor a crosses into d; after f nothing would be left
    assert split_candidates(g) == [0, 3, 4]
    with pytest.raises(SplitError, match="crosses"):
        check_split(g, 1)
    with pytest.raises(SplitError, match="grid"):
        analyze(g, "e", (3, 1))


# ---------------------------------------------------------------------------------------------
# ImageNet MobileNetV2 (width 1.0, 224×224), split after the projection of block 4 (l12,
# 28×28×32), 4×4 grid of 7×7 tiles. Hand calculation of the receptive field per patch row
# (rows and columns are symmetric):
#   l11 dw k3 s2 p1 (in 56): row 0 reads [0,14) (top pad 1), inner rows 15, last row [41,56) 15
#   l7  dw k3 s1 p1 (in 56): l8/l9/l10 regions 14|15|15 → l6 out 15|17|16
#   l4  dw k3 s2 p1 (in 112): l5 regions 15|17|16 → l3 out [0,30) 30 | 35 | [79,112) 33
#   l1  dw k3 s1 p1 (in 112): l2/l3 regions → l0 out 31 | 37 | 34
#   l0  conv k3 s2 p1 (in 224): input window 62 | 75 | 69

MBV2_HEIGHTS = {  # region height of each stage layer's output for patch rows 0, 1-2, 3
    "l0": (31, 37, 34), "l1": (30, 35, 33), "l2": (30, 35, 33), "l3": (30, 35, 33),
    "l4": (15, 17, 16), "l5": (15, 17, 16), "l6": (15, 17, 16), "l7": (14, 15, 15),
    "l8": (14, 15, 15), "l9": (14, 15, 15), "l10": (14, 15, 15), "l11": (7, 7, 7),
    "l12": (7, 7, 7),
}
MBV2_MACS_PER_PIXEL = {  # C_out × C_in/groups × k²
    "l0": 32 * 3 * 9, "l1": 32 * 9, "l2": 16 * 32, "l3": 96 * 16, "l4": 96 * 9,
    "l5": 24 * 96, "l6": 144 * 24, "l7": 144 * 9, "l8": 24 * 144, "l9": 0,
    "l10": 144 * 24, "l11": 144 * 9, "l12": 32 * 144,
}
MBV2_FULL = {"l0": 112, "l1": 112, "l2": 112, "l3": 112, "l4": 56, "l5": 56, "l6": 56,
             "l7": 56, "l8": 56, "l9": 56, "l10": 56, "l11": 28, "l12": 28}


@pytest.fixture(scope="module")
def mbv2(zoo):
    return zoo("mbv2-imagenet")[1]


def test_mbv2_imagenet_hand_calculation(mbv2):
    g = mbv2
    assert [g.layers[i].op for i in (9, 16)] == ["add", "add"]
    plan = analyze(g, "l12", (4, 4))
    # input patch: interior windows are 75×75, the corner one 62×62
    assert plan.input_patch_hw == (75, 75)
    assert plan.patch(0, 0).window == Box(0, 62, 0, 62)
    assert plan.patch(1, 2).window == Box(43, 118, 99, 174)
    assert plan.patch(3, 3).window == Box(155, 224, 155, 224)
    for name, (h0, hi, h3) in MBV2_HEIGHTS.items():
        for r, h in zip((0, 1, 2, 3), (h0, hi, hi, h3)):
            assert plan.patch(r, 1).regions[name].height == h, (name, r)
    # per-patch MACs of an interior patch (halo included)
    inner = sum(MBV2_HEIGHTS[n][1] ** 2 * m for n, m in MBV2_MACS_PER_PIXEL.items())
    assert inner == 8_094_848
    assert plan.patch(1, 1).macs == inner
    # whole stage: Σ_r Σ_c h_r·h_c = (h0 + 2·hi + h3)² per layer
    stage = sum((h[0] + 2 * h[1] + h[2]) ** 2 * MBV2_MACS_PER_PIXEL[n]
                for n, h in MBV2_HEIGHTS.items())
    stage_lw = sum(MBV2_FULL[n] ** 2 * m for n, m in MBV2_MACS_PER_PIXEL.items())
    assert plan.macs_patch_stage == stage == 119_202_032
    assert plan.macs_stage_layerwise == stage_lw == 91_282_688
    assert plan.overhead_patch_stage_pct == pytest.approx(100 * (stage - stage_lw) / stage_lw)
    assert 300e6 < plan.macs_total_layerwise < 301e6          # MobileNetV2-1.0: ~300 M MACs
    assert plan.overhead_total_pct == pytest.approx(
        100 * (stage - stage_lw) / plan.macs_total_layerwise)
    # peak SRAM (the arena), 8-bit, depthwise layers in place: layer by layer, l3's expansion
    # holds 16×112² in + 96×112² out (the s2 depthwise l4 after it, 96×112² in + 96×56² out
    # = 1,505,280 B without in-place, now writes over its input)
    assert plan.peak_sram_layerwise_bytes == 16 * 112 ** 2 + 96 * 112 ** 2 == 1_404_928
    # most bytes alive at a stage layer (per patch, without in-place): interior patch at l4:
    # 96×35² in + 96×17² out, + the 32×28×28 stage output
    assert plan.peak_sram_stage_bytes == 96 * 35 ** 2 + 96 * 17 ** 2 + 32 * 28 * 28
    # without in-place block 5's depthwise at 28×28 held 192ch in + 192ch out + its 32ch
    # input (residual) = 326,144 B; in place, the peak is its projection: 192ch in, 32ch out
    # and the block input kept for the residual
    assert plan.peak_sram_rest_bytes == 2 * 192 * 28 ** 2 + 32 * 28 ** 2 == 326_144
    assert plan.peak_sram_patch_bytes == (192 + 32 + 32) * 28 ** 2 == 200_704
    # 4-bit activations halve every buffer (all channel counts are even)
    plan4 = analyze(g, "l12", (4, 4), bits=4)
    assert plan4.peak_sram_patch_bytes == 200_704 // 2
