"""Shared fixtures of the patch tests: zoo layer graphs imported once per session."""
from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=None)
def zoo_import(name: str):
    """(Relax module, layer graph) of a zoo model with seeded random weights."""
    from tvm_quantmcu import frontend, models
    return frontend.import_model(models.get(name, pretrained=False), models.info(name).input_shape)


@pytest.fixture(scope="session")
def zoo():
    return zoo_import
