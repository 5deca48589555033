"""The C library generated from the module the QuantMCU passes lowered: the same firmware the
policy gave before, a width changed in the module changes it, and on the full test set the
generated C, the Relax VM and the integer reference built from that module agree."""
import numpy as np
import pytest
import tvm

from helpers import have, trained, widen_pass
from relax_passes import layer_graph, policy_of
from tvm_quantmcu import pipeline
from tvm_quantmcu.codegen import generate, generate_module
from tvm_quantmcu.codegen.host import HostModel
from tvm_quantmcu.relax_build import build, compile_vm
from tvm_quantmcu.search import Simulator

needs_gcc = pytest.mark.skipif(not have("gcc"), reason="no host C compiler")


@pytest.mark.parametrize("model", ["mbv2-fmnist", "mcunet-fmnist"])
@pytest.mark.parametrize("policy", ["int8", "quantmcu"])
def test_module_gives_the_policys_firmware(shipped, tmp_path, model, policy):
    if not trained(model):
        pytest.skip(f"{model} has no trained checkpoint")
    pol = shipped(model, policy)
    lowered = build(model, None, pol)
    a = generate(pipeline.load(model).graph, pol, tmp_path / "from_policy", name=model)
    b = generate_module(lowered, tmp_path / "from_module")
    assert a.hash == b.hash and a.arena_bytes == b.arena_bytes


@needs_gcc
def test_width_changed_in_the_module_changes_the_firmware(shipped, test_images, tmp_path):
    from relax_passes import AnnotateBits, LowerToQuantMCUKernels, PatchSplit, VDPCRouting
    from tvm_quantmcu.patch import analyze
    pol = shipped("mbv2-fmnist", "quantmcu")
    imp = pipeline.load("mbv2-fmnist")
    annotated = tvm.transform.Sequential([
        PatchSplit(analyze(imp.graph, pol.split_index, pol.grid)),
        AnnotateBits(pol)])(imp.relax_mod)
    tensor = sorted(pol.bits_low, key=list(pol.ranges8).index)[0]   # the first low-bit map
    changed = widen_pass(tensor)(annotated)
    lowered = tvm.transform.Sequential([VDPCRouting(), LowerToQuantMCUKernels()])(changed)
    assert policy_of(lowered).act_bits(tensor) == 8 != pol.act_bits(tensor)
    gen = generate_module(lowered, tmp_path / "changed")
    assert gen.hash != generate(imp.graph, pol, tmp_path / "policy").hash
    x = test_images(40)
    want = Simulator(layer_graph(lowered), policy_of(lowered)).run(x)
    got = HostModel(gen).run(x)
    assert (got[0] == want[0]).all() and (got[1] == want[1]).all()


@pytest.mark.slow
@needs_gcc
@pytest.mark.parametrize("model", ["mbv2-fmnist", "mcunet-fmnist"])
@pytest.mark.parametrize("policy", ["int8", "quantmcu"])
def test_c_vm_and_reference_agree_on_the_full_test_set(model, policy, shipped, test_images,
                                                         tmp_path):
    if not trained(model):
        pytest.skip(f"{model} has no trained checkpoint")
    lowered = build(model, None, shipped(model, policy))
    x = test_images(10_000, pipeline.load(model).input_size)
    want, want_flags = Simulator(layer_graph(lowered), policy_of(lowered)).run(x)
    c_out, c_flags = HostModel(generate_module(lowered, tmp_path / "model")).run(x)
    np.testing.assert_array_equal(c_out, want)
    np.testing.assert_array_equal(c_flags, want_flags)
    vm_out, vm_flags = compile_vm(lowered, {"kind": "llvm", "opt-level": 0}).run(x)
    np.testing.assert_array_equal(vm_out, want)
    np.testing.assert_array_equal(vm_flags, want_flags)
    if policy == "quantmcu":
        assert want_flags.any() and not want_flags.all()    # both routes taken
