"""Generated kernels vs the integer numpy reference, built with the host gcc.

Each hypothesis example builds one kernel (random op, odd shapes, strides, borders, bits,
schedule) and runs several random data cases through it, including patch windows (smaller
input windows with their own border padding). The default run covers ~50 random cases (plus the fixed layer shapes); the slow
run (`-m slow`) covers 350."""
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_quantmcu.topi import KernelSpec, UnsupportedKernel, get_kernel, prepare, runner
from tvm_quantmcu.topi.cases import random_case

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host gcc")

BITS = st.sampled_from([8, 4, 2])
CASES_PER_KERNEL = 5


@st.composite
def specs(draw):
    op = draw(st.sampled_from(["conv2d", "conv2d", "pointwise", "depthwise", "depthwise",
                               "dense", "avgpool", "maxpool", "add"]))
    c = draw(st.integers(1, 13))
    oc = draw(st.integers(1, 13))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    ib, ob = draw(BITS), draw(BITS)
    if op == "dense":
        return KernelSpec("dense", (h, w, c), oc, in_bits=ib, out_bits=ob)
    if op == "add":
        return KernelSpec("add", (h, w, c), c, in_bits=ib, out_bits=ob, in2_bits=draw(BITS))
    if op == "pointwise":
        return KernelSpec("conv2d", (h, w, c), oc, (1, 1), (1, 1), (0, 0, 0, 0), ib, ob)
    kh, kw = draw(st.sampled_from([(1, 1), (2, 2), (3, 3), (3, 1), (5, 5)]))
    s = draw(st.sampled_from([(1, 1), (2, 2), (1, 2)]))
    pad = tuple(draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw))
    pad = (pad[0], pad[1], pad[2], pad[3])
    h, w = max(h, kh), max(w, kw)
    return KernelSpec(op, (h, w, c),
                      oc if op == "conv2d" else c, (kh, kw), s, pad, ib, ob)


def _windows(spec, rng):
    """The full input, plus patch windows that keep the output tile: less top/left padding
    and a taller/wider input, as for an interior patch."""
    h, w, _ = spec.in_shape
    pt, pl = spec.padding[:2]
    wins = [(h, w, pt, pl)]
    if spec.op in ("conv2d", "depthwise", "avgpool", "maxpool") and (pt or pl):
        dt, dl = int(rng.integers(0, pt + 1)), int(rng.integers(0, pl + 1))
        wins.append((h + dt, w + dl, pt - dt, pl - dl))
    return wins


def check_spec(spec, schedule, seed):
    k = get_kernel(spec, schedule, "host")
    lib = runner.host_library([k])
    rng = np.random.default_rng(seed)
    n = 0
    for i in range(CASES_PER_KERNEL):
        wins = _windows(spec, rng)
        win = wins[i % len(wins)]
        case = random_case(spec, rng, small_shift=(i == CASES_PER_KERNEL - 1), window=win)
        y = runner.run_host(lib, k, case.x, case.params, case.window)
        np.testing.assert_array_equal(y, case.expected,
                                      err_msg=f"{spec.describe()} {schedule} window {win}")
        n += 1
    return n


_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@settings(max_examples=10, **_SETTINGS)
@given(spec=specs(), schedule=st.sampled_from(["dsp", "dsp", "portable", "default"]),
       seed=st.integers(0, 2**31))
def test_random_kernels_match_reference(spec, schedule, seed):
    check_spec(spec, schedule, seed)


@pytest.mark.slow
@settings(max_examples=70, **_SETTINGS)
@given(spec=specs(), schedule=st.sampled_from(["dsp", "dsp", "portable", "default"]),
       seed=st.integers(0, 2**31))
def test_random_kernels_match_reference_many(spec, schedule, seed):
    check_spec(spec, schedule, seed)


LAYERS = [
    KernelSpec("conv2d", (9, 9, 3), 8, (3, 3), (2, 2), (1, 1, 1, 1), 8, 8),
    KernelSpec("conv2d", (6, 6, 16), 24, (1, 1), (1, 1), (0, 0, 0, 0), 4, 4),
    KernelSpec("depthwise", (8, 8, 12), 12, (3, 3), (1, 1), (1, 1, 1, 1), 2, 8),
    KernelSpec("depthwise", (9, 9, 7), 7, (3, 3), (2, 2), (1, 1, 1, 1), 8, 2),
    KernelSpec("dense", (1, 1, 33), 10, in_bits=8, out_bits=8),
]


@pytest.mark.parametrize("spec, schedule",
                         [(s, "dsp") for s in LAYERS] + [(s, "portable") for s in LAYERS]
                         + [(LAYERS[0], "default"), (LAYERS[2], "default")],
                         ids=lambda v: v.describe() if isinstance(v, KernelSpec) else v)
def test_layer_shapes(spec, schedule):
    check_spec(spec, schedule, 1234)


def test_small_shifts_and_saturation():
    """Shifts below 32 (the 64-bit path) and values that saturate the clamp."""
    spec = KernelSpec("conv2d", (4, 4, 5), 6, (3, 3), (1, 1), (1, 1, 1, 1), 8, 8)
    k = get_kernel(spec, "dsp", "host")
    lib = runner.host_library([k])
    rng = np.random.default_rng(7)
    for _ in range(4):
        case = random_case(spec, rng, small_shift=True)
        assert np.array_equal(runner.run_host(lib, k, case.x, case.params), case.expected)


def test_low_bit_weights_reach_the_fast_requantization():
    """4-bit weights lower n below 33; prepare scales weights, bias and n by 2^k (same
    outputs) so that the DSP requantization takes its one-SMMUL path."""
    spec = KernelSpec("conv2d", (3, 3, 8), 4, (1, 1), in_bits=8, out_bits=8)
    w = np.array([[7, -8, 3, 0, 1, -1, 2, 5]] * 4).reshape(4, 8, 1, 1)
    p = prepare(spec, w=w, bias=[5, -5, 0, 1], M=[1 << 30] * 4, n=[30, 31, 33, 29],
                zp_in=3, zp_out=0, lo=0, hi=255)
    assert p.shift.tolist() == [33, 33, 33, 33]
    pw = p.w.reshape(4, 8)
    assert (pw[0] == w[0, :, 0, 0] * 8).all() and (pw[2] == w[2, :, 0, 0]).all()
    assert (pw[3] == w[3, :, 0, 0] * 16).all()      # k = 4: -8·16 = -128 still fits
    wide = prepare(spec, w=w * 16, bias=[5] * 4, M=[1 << 30] * 4, n=[30] * 4, zp_in=3,
                   zp_out=0, lo=0, hi=255)
    assert wide.shift.tolist() == [30] * 4            # no room in int8: unchanged


@pytest.mark.parametrize("op", ["pointwise", "depthwise", "dense"])
@pytest.mark.parametrize("w_bits", [4, 2])
def test_low_bit_weights_small_shifts_match_reference(op, w_bits):
    spec = {"pointwise": KernelSpec("conv2d", (5, 4, 12), 6, (1, 1), in_bits=4, out_bits=8),
            "depthwise": KernelSpec("depthwise", (5, 6, 10), 10, (3, 3), (1, 1), (1,) * 4, 8, 4),
            "dense": KernelSpec("dense", (1, 1, 40), 7, in_bits=8, out_bits=8)}[op]
    k = get_kernel(spec, "dsp", "host")
    lib = runner.host_library([k])
    rng = np.random.default_rng(w_bits)
    for _ in range(3):
        case = random_case(spec, rng, small_shift=True, w_bits=w_bits)
        assert np.array_equal(runner.run_host(lib, k, case.x, case.params), case.expected)


@pytest.mark.parametrize("spec, match", [
    (KernelSpec("conv2d", (4, 4, 3), 8, (3, 3), in_bits=3), "activation bits"),
    (KernelSpec("depthwise", (4, 4, 3), 6, (3, 3)), "channel multiplier"),
    (KernelSpec("conv2d", (2, 2, 3), 8, (5, 5)), "larger than the padded input"),
    (KernelSpec("conv2d", (4, 4, 3), 8, (3, 3), padding=(3, 0, 0, 0)), "padding"),
    (KernelSpec("softmax", (4, 4, 3), 3), "unknown op"),
])
def test_unsupported_raises_with_op_shapes_bits(spec, match):
    with pytest.raises(UnsupportedKernel, match=match) as e:
        get_kernel(spec, "dsp", "host")
    assert spec.describe() in str(e.value)       # names the op, the shapes and the bits
    assert "bits" in spec.describe() and spec.op in spec.describe()
