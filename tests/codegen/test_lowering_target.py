"""The kernels' target enters at lowering: on the Cortex-M55 sub-byte weights are stored as int8
(the Helium kernels read int8 weights), the module records its target, the C generator reads
it, the search's flash figure follows it, and the outputs stay bit-exact."""
import numpy as np
import pytest

from helpers import requires_dataset
from tvm_quantmcu import search
from tvm_quantmcu.codegen import build_program, generate_module, weight_constants
from tvm_quantmcu.codegen.host import HostModel
from tvm_quantmcu.codegen.lowered import LoweredModuleError
from tvm_quantmcu.relax_build import lower
from tvm_quantmcu.search.simulate import Simulator

pytestmark = requires_dataset


@pytest.fixture(scope="module")
def quantmcu(shipped):
    pol = shipped("mbv2-fmnist", "quantmcu")
    assert pol.w_bits and min(pol.w_bits.values()) < 8     # it has sub-byte weights
    return pol


@pytest.fixture(scope="module")
def lowered(mbv2_graph, quantmcu):
    return {t: lower(mbv2_graph, quantmcu, target=t) for t in ("cortex-m4", "cortex-m55")}


def test_m55_stores_sub_byte_weights_as_int8(lowered, quantmcu):
    assert str(lowered["cortex-m55"]["main"].attrs["quantmcu.target"]) == "cortex-m55"
    calls = {t: build_program(lowered[t]).calls for t in lowered}     # the module's target
    assert {c.kernel.target for t in calls for c in calls[t]} == set(lowered)
    assert all(c.kernel.target == "cortex-m55" for c in calls["cortex-m55"])
    sub = {t: [c for c in calls[t] if c.layer in quantmcu.w_bits] for t in lowered}
    assert sub["cortex-m55"] and len(sub["cortex-m55"]) == len(sub["cortex-m4"])
    assert all(c.kernel.spec.w_bits == 8 and c.kernel.isa == "mve" for c in sub["cortex-m55"])
    assert any(c.kernel.spec.w_bits < 8 for c in sub["cortex-m4"])
    # the other layers are the same kernels
    rest = {t: [c.kernel.spec for c in calls[t] if c.layer not in quantmcu.w_bits]
            for t in lowered}
    assert rest["cortex-m4"] == rest["cortex-m55"]


def test_generator_reads_the_target_and_refuses_another_storage(lowered):
    with pytest.raises(LoweredModuleError, match="lowered for cortex-m55"):
        build_program(lowered["cortex-m55"], target="cortex-m4", compile_kernels=False)
    with pytest.raises(LoweredModuleError, match="lowered for cortex-m4"):
        build_program(lowered["cortex-m4"], target="cortex-m55", compile_kernels=False)
    # the same storage: another DSP core, or the host's portable kernels
    build_program(lowered["cortex-m4"], target="cortex-m7", compile_kernels=False)
    build_program(lowered["cortex-m55"], target="host", compile_kernels=False)


def test_search_flash_follows_the_target(mbv2_graph, quantmcu, lowered):
    flash = {t: search.weight_bytes(mbv2_graph, quantmcu, t) for t in lowered}
    for t, mod in lowered.items():
        assert flash[t] == weight_constants(mod).bytes(), t
    assert flash["cortex-m55"] > flash["cortex-m4"]      # int8 instead of packed weights


def test_m55_lowering_is_bit_exact_on_the_host(mbv2_graph, quantmcu, lowered, test_images,
                                               tmp_path):
    gen = generate_module(lowered["cortex-m55"], tmp_path / "model", target="host")
    x = test_images(24)
    out, routing = HostModel(gen).run(x)
    ref, flags = Simulator(mbv2_graph, quantmcu).run(x)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(routing, flags)


def test_unknown_target_is_refused():
    from relax_passes import LowerToQuantMCUKernels
    with pytest.raises(ValueError, match="unknown target 'cortex-m99'"):
        LowerToQuantMCUKernels(target="cortex-m99")
