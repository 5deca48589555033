"""Kernel windows held inside a larger buffer (negative pad_t/pad_l), shared by the host and
QEMU tests."""
import numpy as np

from tvm_quantmcu.topi import KernelSpec

SPECS = [
    KernelSpec("conv2d", (6, 7, 5), 6, (3, 3), (1, 1), (0, 0, 0, 0), 8, 8),
    KernelSpec("conv2d", (7, 6, 16), 8, (3, 3), (2, 2), (1, 1, 1, 1), 4, 8),
    KernelSpec("conv2d", (5, 6, 16), 10, (1, 1), (1, 1), (0, 0, 0, 0), 2, 4),
    KernelSpec("conv2d", (6, 6, 3), 4, (1, 1), (2, 2), (0, 0, 0, 0), 8, 2),
    KernelSpec("depthwise", (6, 8, 16), 16, (3, 3), (1, 1), (0, 0, 0, 0), 8, 8),
    KernelSpec("depthwise", (7, 7, 24), 24, (3, 3), (2, 2), (1, 1, 1, 1), 4, 4),
    KernelSpec("depthwise", (6, 6, 9), 9, (3, 3), (1, 1), (1, 1, 1, 1), 2, 8),
    KernelSpec("avgpool", (6, 6, 5), 5, (2, 2), (2, 2), (0, 0, 0, 0), 4, 8),
]

OFFSETS = ((2, 3), (1, 0), (0, 4))


def embed(x: np.ndarray, a: int, b: int, rng) -> tuple[np.ndarray, tuple]:
    """x (h, w, bytes) placed at (a, b) of a larger buffer full of other values, and the
    window that selects it: (h + a, w + b, -a, -b)."""
    h, w, cb = x.shape
    big = rng.integers(0, 256, (h + a, w + b, cb), np.uint8)
    big[a:, b:] = x
    return big, (h + a, w + b, -a, -b)
