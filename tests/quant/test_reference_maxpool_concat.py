"""Max pooling and concatenation in the integer reference against torch fake quantization."""
import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from tvm_quantmcu.graph import Layer
from tvm_quantmcu.quant import ActQuant, quantize_layer


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 6), st.integers(2, 9), st.sampled_from([1, 2, 3]), st.integers(1, 3),
       st.integers(0, 1), st.sampled_from([8, 4, 2]), st.sampled_from([8, 4, 2]),
       st.sampled_from([None, "relu"]), st.integers(0, 2 ** 31))
def test_maxpool_within_one_step_of_fake_quant(c, h, k, s, pad, bits_in, bits_out, act, seed):
    rng = np.random.default_rng(seed)
    k = min(k, h)
    pad = min(pad, k // 2)
    lay = Layer("m", "maxpool", ["x"], "y", kernel=(k, k), stride=(s, s), padding=(pad,) * 4,
                act=act)
    in_q = ActQuant.from_range(rng.uniform(-2, 0), rng.uniform(0.5, 3), bits_in)
    out_q = ActQuant.from_range(rng.uniform(-2, 0), rng.uniform(0.5, 3), bits_out)
    q = quantize_layer(lay, [in_q], out_q)
    x_q = rng.integers(0, in_q.qmax + 1, (2, h, h, c))
    got = q.run([x_q])
    x = torch.from_numpy(in_q.dequantize(x_q)).permute(0, 3, 1, 2)
    y = F.max_pool2d(x, k, s, pad).permute(0, 2, 3, 1).numpy()
    lo, hi = out_q.clamp_bounds(act)
    want = np.clip(np.floor(y / out_q.scale + 0.5) + out_q.zero_point, lo, hi)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1


def test_maxpool_is_exact_when_input_and_output_share_quantization():
    rng = np.random.default_rng(0)
    q8 = ActQuant.from_range(-1.0, 3.0, 8)
    lay = Layer("m", "maxpool", ["x"], "y", kernel=(3, 3), stride=(2, 2), padding=(1,) * 4)
    q = quantize_layer(lay, [q8], q8)
    x_q = rng.integers(0, 256, (1, 9, 9, 5))
    want = F.max_pool2d(torch.from_numpy(x_q).double().permute(0, 3, 1, 2), 3, 2, 1)
    assert np.array_equal(q.run([x_q]), want.permute(0, 2, 3, 1).numpy())


def test_concat_requantizes_each_input_to_the_output():
    rng = np.random.default_rng(1)
    qa, qb = ActQuant.from_range(0, 2.0, 8), ActQuant.from_range(-1.0, 1.0, 4)
    out_q = ActQuant.from_range(-1.0, 2.0, 8)
    lay = Layer("c", "concat", ["a", "b"], "y")
    q = quantize_layer(lay, [qa, qb], out_q)
    a, b = rng.integers(0, 256, (1, 4, 4, 3)), rng.integers(0, 16, (1, 4, 4, 2))
    got = q.run([a, b])
    want = out_q.quantize(np.concatenate([qa.dequantize(a), qb.dequantize(b)], axis=3))
    assert got.shape == (1, 4, 4, 5) and np.abs(got - want).max() <= 1
