"""Integer patch executor: patch by patch equals the layer-by-layer integer reference."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_quantmcu import data, quant
from tvm_quantmcu.graph import Graph, Layer, out_shape, run_float
from tvm_quantmcu.patch import analyze, input_window, run_patch, run_patch_int, run_stage

# ---------------------------------------------------------------------------------------------
# Random chains (property test)


@st.composite
def chains(draw):
    """A random stage of conv / depthwise / pooling layers and residual blocks (kernels 1-7,
    strides 1-2, random asymmetric paddings, dilation 1-2), one layer after it, a grid and
    per-tensor activation bits."""
    rng_seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(rng_seed)
    c = draw(st.integers(1, 3))
    h, w = draw(st.integers(6, 24)), draw(st.integers(6, 24))
    layers: list[Layer] = []
    cur, shape = "input", (c, h, w)
    shapes = {"input": shape}

    def add(l):
        nonlocal cur, shape
        shape = out_shape(l, [shapes[t] for t in l.inputs])
        shapes[l.output] = shape
        layers.append(l)
        cur = l.output

    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "dw", "pool", "maxpool", "res", "cat"]))
        name = f"l{len(layers)}"
        ci, hi, wi = shape
        k = draw(st.integers(1, 7))
        s = draw(st.integers(1, 2))
        d = draw(st.integers(1, 2)) if kind in ("conv", "dw") and k > 1 else 1
        pads = tuple(draw(st.integers(0, max(0, d * (k - 1)))) for _ in range(4))
        if min(hi + pads[0] + pads[2], wi + pads[1] + pads[3]) < d * (k - 1) + 1:
            continue                               # window larger than the padded input
        act = draw(st.sampled_from([None, "relu", "relu6"]))
        if kind == "conv":
            co = draw(st.integers(1, 4))
            add(Layer(name, "conv2d", [cur], name, rng.normal(0, 0.5, (co, ci, k, k)),
                      rng.normal(0, 0.1, co), (s, s), pads, (d, d), 1, act=act))
        elif kind == "dw":
            add(Layer(name, "conv2d", [cur], name, rng.normal(0, 0.5, (ci, 1, k, k)),
                      rng.normal(0, 0.1, ci), (s, s), pads, (d, d), ci, act=act))
        elif kind in ("pool", "maxpool"):
            kp = min(k, 3)
            pp = tuple(min(p, kp // 2) for p in pads)
            if min(hi + pp[0] + pp[2], wi + pp[1] + pp[3]) < kp:
                continue
            add(Layer(name, "avgpool" if kind == "pool" else "maxpool", [cur], name,
                      stride=(s, s), padding=pp, kernel=(kp, kp)))
        elif kind == "cat":                        # a 3×3 "same" conv beside its input
            skip = cur
            add(Layer(name, "conv2d", [cur], name, rng.normal(0, 0.5, (2, ci, 3, 3)),
                      rng.normal(0, 0.1, 2), (1, 1), (1, 1, 1, 1), act=act))
            n2 = f"l{len(layers)}"
            add(Layer(n2, "concat", [skip, cur], n2))
        else:                                      # residual: "same" k×k conv, then add
            kr = draw(st.sampled_from([1, 3, 5, 7]))
            skip = cur
            p = (kr - 1) // 2
            add(Layer(name, "conv2d", [cur], name, rng.normal(0, 0.5, (ci, ci, kr, kr)),
                      rng.normal(0, 0.1, ci), (1, 1), (p, p, p, p), act="relu"))
            n2 = f"l{len(layers)}"
            add(Layer(n2, "add", [skip, cur], n2, act=act))
    if not layers:
        add(Layer("l0", "conv2d", ["input"], "l0", rng.normal(0, 0.5, (2, c, 3, 3)),
                  np.zeros(2), (1, 1), (1, 1, 1, 1)))
    split = len(layers) - 1
    ci = shape[0]
    add(Layer(f"l{len(layers)}", "conv2d", [cur], f"l{len(layers)}",
              rng.normal(0, 0.5, (2, ci, 1, 1)), np.zeros(2)))
    g = Graph("input", (c, h, w), layers, cur)
    _, ho, wo = g.shapes[layers[split].output]
    grid = (draw(st.integers(1, min(ho, 5))), draw(st.integers(1, min(wo, 5))))
    bits = {l.output: int(rng.choice([8, 4, 2])) for l in layers}
    return g, split, grid, bits, rng_seed


def quantize_random(g: Graph, bits, x: np.ndarray):
    env = run_float(g, x, keep=True)
    ranges = {t: (float(v.min()), float(v.max())) for t, v in env.items()}
    return quant.quantize_graph(g, ranges, bits)


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(chains())
def test_random_chains_split_equals_unsplit(case):
    g, split, grid, bits, seed = case
    x = np.random.default_rng(seed).random((2,) + g.input_shape).astype(np.float32)
    qg = quantize_random(g, bits, x)
    xq = quant.quantize_input(x)
    plan = analyze(g, split, grid, bits)
    ref = quant.run_int(qg, xq, keep=True)
    got = run_patch_int(qg, plan, xq, keep=True)
    np.testing.assert_array_equal(got[plan.stage_output], ref[plan.stage_output])
    np.testing.assert_array_equal(got[g.output], ref[g.output])
    # the tiles partition the stage output
    cover = np.zeros(g.shapes[plan.stage_output][1:], int)
    for p in plan.all_patches():
        cover[p.tile.h0:p.tile.h1, p.tile.w0:p.tile.w1] += 1
    assert (cover == 1).all()


# ---------------------------------------------------------------------------------------------
# Zoo models


def zoo_qgraph(zoo, name, n_cal=16):
    _, g = zoo(name)
    size = g.input_shape[1]
    try:
        split = data.load("test")
        cal = split.images(size, 1000, 1000 + n_cal)
    except (data.DatasetMissingError, FileNotFoundError):
        pytest.skip("Fashion-MNIST (dataset-fashion-mnist) is not installed")
    cal = np.repeat(cal, g.input_shape[0], axis=1)
    qg = quant.quantize_graph(g, quant.ranges(quant.observe(g, cal)))
    return g, qg


def eval_images(size: int, channels: int, n: int) -> np.ndarray:
    x = data.load("test").images(size, 0, n)
    return np.repeat(x, channels, axis=1)


FMNIST_PLANS = {  # (split layer, grid): the planner's kind of choice, uneven and p≠q grids
    "mbv2-fmnist": [("l12", (3, 4)), ("l4", (3, 2)), ("l9", (5, 5))],
    "mcunet-fmnist": [("l13", (4, 4)), ("l3", (2, 3)), ("l10", (3, 5))],
}


@pytest.mark.parametrize("name", [
    "mbv2-fmnist", pytest.param("mcunet-fmnist", marks=pytest.mark.slow)])
def test_zoo_fmnist_bit_exact(zoo, name):
    g, qg = zoo_qgraph(zoo, name)
    xq = quant.quantize_input(eval_images(g.input_shape[1], g.input_shape[0], 50))
    ref = quant.run_int(qg, xq)
    for split, grid in FMNIST_PLANS[name]:
        plan = analyze(g, split, grid)
        np.testing.assert_array_equal(run_patch_int(qg, plan, xq), ref, err_msg=f"{split} {grid}")


def test_routing_hook_switches_qgraph_mid_branch(zoo):
    """The per-patch hook: run the first layer with one QGraph, finish with another."""
    g, qg8 = zoo_qgraph(zoo, "mbv2-fmnist")
    stats = quant.observe(g, data.load("test").images(64, 1000, 1016))
    qg4 = quant.quantize_graph(g, quant.ranges(stats), 4)
    plan = analyze(g, "l12", (3, 4))
    xq = quant.quantize_input(eval_images(64, 1, 4))
    first = plan.first_feature_map
    chosen = {}

    def branch(p, win):
        env = run_patch(qg8, plan, p, win, upto=first)
        assert set(env) == {g.input, first}
        use = qg8 if (p.row + p.col) % 2 else qg4   # any decision per patch
        chosen[(p.row, p.col)] = use
        env.pop(first)                          # recompute it in the chosen precision
        return run_patch(use, plan, p, win, env=env)

    stage = run_stage(qg8, plan, xq, branch)
    for p in plan.all_patches():
        env = run_patch(chosen[(p.row, p.col)], plan, p, input_window(plan, p, xq))
        t = p.tile
        np.testing.assert_array_equal(stage[:, t.h0:t.h1, t.w0:t.w1], env[plan.stage_output])
    assert len(chosen) == 12
    # per-patch, per-layer MACs for BitOPs
    macs = plan.layer_macs_per_patch()
    assert len(macs["l0"]) == 12 and sum(sum(v) for v in macs.values()) == plan.macs_patch_stage


@pytest.mark.slow
@pytest.mark.parametrize("name,plans", [
    ("mbv2-imagenet", [("l12", (4, 4)), ("l5", (2, 3)), ("l23", (3, 3))]),
    ("mcunet-320kb", [("l12", (4, 4)), ("l9", (3, 2)), ("l2", (5, 5))]),
])
def test_zoo_imagenet_bit_exact(zoo, name, plans):
    g, qg = zoo_qgraph(zoo, name, n_cal=8)
    xq = quant.quantize_input(eval_images(g.input_shape[1], g.input_shape[0], 50))
    ref = quant.run_int(qg, xq)
    for split, grid in plans:
        plan = analyze(g, split, grid)
        np.testing.assert_array_equal(run_patch_int(qg, plan, xq), ref, err_msg=f"{split} {grid}")
