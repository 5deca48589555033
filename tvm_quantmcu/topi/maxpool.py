"""Max pooling: the window maximum of the unpacked input values, then the requantization of
:mod:`.compute` (``bias = -zp_in``, M·2^-n = s_in/s_out), like an average pool of one tap.

The border padding holds 0, the smallest value of every width, instead of the zero point:
torch pads max pooling with -inf, and every window holds at least one real value (padding <
kernel), so 0 never wins against it. Requantization is monotone, so requantizing the maximum
is the maximum of the requantized values (with a shared quantization M = 2^30, n = 30, it is
the identity)."""
from __future__ import annotations

from tvm import te


def pad_byte(spec):
    """The packed padding byte of the op's input window: 0 for max pooling, else None."""
    return 0 if spec.op == "maxpool" else None


def window_max(xpad, spec, unpack, oh: int, ow: int):
    """acc[h, w, c] = max of the kh×kw window of unpacked values (int32)."""
    (kh, kw), (sh, sw) = spec.kernel, spec.stride
    rkh = te.reduce_axis((0, kh), name="rkh")
    rkw = te.reduce_axis((0, kw), name="rkw")
    return te.compute((oh, ow, spec.out_channels), lambda i, j, ch: te.max(
        unpack(xpad, i * sh + rkh, j * sw + rkw, ch, spec.in_bits), axis=[rkh, rkw]),
        name="acc")
