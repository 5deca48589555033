"""Shared test helpers: tool and data availability."""
import os
import shutil

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


requires_dataset = pytest.mark.skipif(
    not os.path.exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
    and not os.environ.get("QUANTMCU_FMNIST_DIR"),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


def trained(name: str) -> bool:
    from tvm_quantmcu import models
    return os.path.exists(models.info(name).checkpoint)


def requires_trained(name: str):
    return pytest.mark.skipif(not trained(name),
                              reason=f"checkpoint of {name} not trained "
                                     f"(python -m tvm_quantmcu.models.train --model {name})")


# A QuantMCU policy with VDPC routing (the BitOPs-Φ search at the shipped budget) for the tests
# of the routing: the shipped quantmcu policy is the device-Φ search's choice, which may run
# without VDPC
VDPC_POLICY = "quantmcu-vdpc"


def zoo_policy(model: str, name: str):
    """The shipped policy `name` of zoo model `model`, or the test VDPC policy (tests/data)."""
    from tvm_quantmcu.models import checkpoint_hash
    from tvm_quantmcu.models.policies import load_policy
    from tvm_quantmcu.quant.policy import Policy
    if name == VDPC_POLICY:
        return Policy.load(os.path.join(REPO, "tests", "data", f"{model}.{name}.json"),
                           model=model, model_hash=checkpoint_hash(model))
    return load_policy(model, name)


def with_grid(policy, grid):
    """The same policy on another patch grid (its ranges and threshold do not depend on it)."""
    import dataclasses
    return dataclasses.replace(policy, grid=tuple(grid))


def widen_pass(tensor: str):
    """A user's module pass: feature map `tensor` at 8 bits in the low-bit branch of every
    patch function, changed in the IR only (after AnnotateBits, before VDPCRouting)."""
    import tvm
    from relax_passes import ATTR_BITS_LOW

    @tvm.transform.module_pass(opt_level=0, name="WidenOneMap")
    def widen(mod, _ctx):
        out = mod.clone()
        for gv, f in mod.functions.items():
            if f.attrs is not None and ATTR_BITS_LOW in f.attrs:
                bits = {str(k): int(v) for k, v in f.attrs[ATTR_BITS_LOW].items()}
                out[gv] = f.with_attr(ATTR_BITS_LOW, {**bits, tensor: 8})
        return out
    return widen
