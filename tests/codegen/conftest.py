import numpy as np
import pytest

from helpers import requires_dataset, zoo_policy


@pytest.fixture(scope="session")
def mbv2_graph():
    from tvm_quantmcu import pipeline
    return pipeline.load("mbv2-fmnist").graph


@pytest.fixture(scope="session")
def shipped():
    return zoo_policy


@pytest.fixture(scope="session")
def test_images():
    """First n test images as NHWC uint8 (what the device receives), cached per size."""
    from tvm_quantmcu import data
    from tvm_quantmcu.quant import quantize_input
    cache = {}
    split = data.load("test")

    def get(n, size=64):
        if (n, size) not in cache:
            cache[(n, size)] = quantize_input(split.images(size, 0, n)).astype(np.uint8)
        return cache[(n, size)]
    return get


pytestmark = requires_dataset
