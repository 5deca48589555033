"""The integer reference at 8 bits against a torch fake-quant model of the same layer."""
import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from tvm_quantmcu.graph import Layer
from tvm_quantmcu.quant import ActQuant, conv2d_int, quantize_layer, quantize_multiplier
from tvm_quantmcu.quant.fixedpoint import requantize


@st.composite
def conv_cases(draw):
    depthwise = draw(st.booleans())
    cin = draw(st.integers(1, 9))
    cout = cin if depthwise else draw(st.integers(1, 9))
    k = draw(st.sampled_from([1, 3, 5]))
    stride = draw(st.integers(1, 2))
    pad = draw(st.integers(0, k // 2))
    h = draw(st.integers(k, 10))
    act = draw(st.sampled_from([None, "relu", "relu6"]))
    seed = draw(st.integers(0, 2 ** 31))
    return depthwise, cin, cout, k, stride, pad, h, act, seed


def fake_quant_conv(x_q, in_q, w_q, w_scale, bias_q, out_q, lay):
    """Float64 torch: dequantize, convolve, quantize (round half up), clamp."""
    x = torch.from_numpy(in_q.dequantize(x_q)).permute(0, 3, 1, 2)
    w = torch.from_numpy(w_q.astype(np.float64) * w_scale.reshape(-1, 1, 1, 1))
    b = torch.from_numpy(bias_q * in_q.scale * w_scale)
    t, l, bo, r = lay.padding
    y = F.conv2d(F.pad(x, (l, r, t, bo)), w, b, lay.stride, 0, 1, lay.groups)
    q = torch.floor(y / out_q.scale + 0.5) + out_q.zero_point
    lo, hi = out_q.clamp_bounds(lay.act)
    return q.clamp(lo, hi).permute(0, 2, 3, 1).numpy().astype(np.int64)


@settings(max_examples=250, deadline=None)
@given(conv_cases())
def test_conv_within_one_step_of_fake_quant(case):
    depthwise, cin, cout, k, stride, pad, h, act, seed = case
    rng = np.random.default_rng(seed)
    groups = cin if depthwise else 1
    w = rng.normal(0, 0.5, (cout, cin // groups, k, k)).astype(np.float32)
    lay = Layer("c", "conv2d", ["x"], "y", weight=w, bias=rng.normal(0, 0.3, cout),
                stride=(stride, stride), padding=(pad,) * 4, groups=groups, act=act)
    in_q = ActQuant.from_range(rng.uniform(-2, 0), rng.uniform(0.5, 3), 8)
    out_q = ActQuant.from_range(rng.uniform(-4, 0), rng.uniform(1, 6), 8)
    q = quantize_layer(lay, [in_q], out_q)
    x_q = rng.integers(0, 256, (2, h, h, cin))
    got = q.run([x_q])
    want = fake_quant_conv(x_q, in_q, q.w, q.w_scale, q.bias, out_q, lay)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1


@settings(max_examples=200, deadline=None)
@given(conv_cases(), st.integers(-12, -4), st.integers(-9, -5), st.integers(-8, -2))
def test_conv_exact_when_multiplier_is_exact(case, e_in, e_w, e_out):
    """With power-of-two scales M·2**-n equals the float multiplier exactly: no difference."""
    depthwise, cin, cout, k, stride, pad, h, act, seed = case
    rng = np.random.default_rng(seed)
    groups = cin if depthwise else 1
    s_in, s_w, s_out = 2.0 ** e_in, 2.0 ** e_w, 2.0 ** e_out
    in_q = ActQuant(s_in, int(rng.integers(0, 256)), 8)
    out_q = ActQuant(s_out, int(rng.integers(0, 256)), 8)
    w_q = rng.integers(-127, 128, (cout, cin // groups, k, k)).astype(np.int8)
    bias_q = rng.integers(-5000, 5000, cout)
    M, n = quantize_multiplier(s_in * s_w / s_out)
    assert M * 2.0 ** -n == s_in * s_w / s_out
    lay = Layer("c", "conv2d", ["x"], "y", weight=w_q.astype(np.float32),
                stride=(stride, stride), padding=(pad,) * 4, groups=groups, act=act)
    x_q = rng.integers(0, 256, (2, h, h, cin))
    lo, hi = out_q.clamp_bounds(act)
    got = conv2d_int(x_q, in_q.zero_point, w_q, bias_q, M, n, out_q.zero_point, lo, hi,
                     lay.stride, lay.padding, (1, 1), groups)
    want = fake_quant_conv(x_q, in_q, w_q, np.full(cout, s_w), bias_q, out_q, lay)
    assert (got == want).all()


def test_requant_rounds_half_up_on_negative_ties():
    # -2.5 → -2 (half up), +2.5 → 3: the documented rule, not banker's rounding
    assert requantize(np.array([-5, 5]), 1 << 30, 31).tolist() == [-2, 3]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(1, 6), st.integers(0, 2 ** 31), st.sampled_from([None, "relu"]))
def test_add_avgpool_dense_within_one_step(c, h, seed, act):
    rng = np.random.default_rng(seed)
    q1 = ActQuant.from_range(rng.uniform(-3, 0), rng.uniform(0.5, 3), 8)
    q2 = ActQuant.from_range(rng.uniform(-3, 0), rng.uniform(0.5, 3), 8)
    qo = ActQuant.from_range(rng.uniform(-5, 0), rng.uniform(1, 5), 8)
    x1 = rng.integers(0, 256, (2, h, h, c))
    x2 = rng.integers(0, 256, (2, h, h, c))
    # residual add
    add = quantize_layer(Layer("a", "add", ["x1", "x2"], "y", act=act), [q1, q2], qo)
    want = np.floor((q1.dequantize(x1) + q2.dequantize(x2)) / qo.scale + 0.5) + qo.zero_point
    want = np.clip(want, *qo.clamp_bounds(act))
    assert np.abs(add.run([x1, x2]) - want).max() <= 1
    # global average pool
    pool = quantize_layer(Layer("p", "avgpool", ["x1"], "y", kernel=(h, h), stride=(h, h)),
                          [q1], qo)
    mean = torch.from_numpy(q1.dequantize(x1)).mean(dim=(1, 2), keepdim=True).numpy()
    want = np.clip(np.floor(mean / qo.scale + 0.5) + qo.zero_point, 0, 255)
    assert np.abs(pool.run([x1]) - want).max() <= 1
    # dense over the flattened input
    w = rng.normal(0, 0.3, (5, h * h * c)).astype(np.float32)
    dense = quantize_layer(Layer("d", "dense", ["x1"], "y", weight=w, bias=rng.normal(0, .1, 5)),
                           [q1], qo)
    xf = torch.from_numpy(q1.dequantize(x1).reshape(2, -1))
    wf = torch.from_numpy(dense.w.astype(np.float64) * dense.w_scale.reshape(-1, 1))
    y = xf @ wf.T + torch.from_numpy(dense.bias * q1.scale * dense.w_scale)
    want = np.clip(np.floor(y.numpy() / qo.scale + 0.5) + qo.zero_point, 0, 255)
    assert np.abs(dense.run([x1]).reshape(2, -1) - want).max() <= 1
