"""The C library generated from the module the QuantMCU passes lowered: the generator reads the
module only (its kernel calls, patch functions and routing), a width changed in the module
changes the firmware, and on the full test set the generated C, the Relax VM and the integer
reference built from that module agree."""
import numpy as np
import pytest
import tvm

from helpers import VDPC_POLICY, have, trained, widen_pass
from relax_passes import layer_graph, policy_of
from tvm_quantmcu import pipeline
from tvm_quantmcu.codegen import generate_module, read_lowered
from tvm_quantmcu.codegen.host import HostModel
from tvm_quantmcu.relax_build import build, compile_vm
from tvm_quantmcu.search import Simulator

needs_gcc = pytest.mark.skipif(not have("gcc"), reason="no host C compiler")


@pytest.mark.parametrize("model", ["mbv2-fmnist", "mcunet-fmnist"])
@pytest.mark.parametrize("policy", ["int8", "quantmcu"])
def test_walker_reads_the_policy_the_module_carries(shipped, model, policy):
    """The patch loop, routing and widths the walker reads are those AnnotateBits wrote."""
    from relax_passes import vdpc_thresholds
    if not trained(model):
        pytest.skip(f"{model} has no trained checkpoint")
    lowered = build(model, None, shipped(model, policy))
    pol = policy_of(lowered)
    m = read_lowered(lowered)
    assert (m.model, m.policy) == (pol.model, pol.name)
    assert len(m.patches) == pol.grid[0] * pol.grid[1]
    assert m.split_layer == layer_graph(lowered).layers[pol.split_index].name
    for p in m.patches:
        assert (p.check is not None) == bool(pol.vdpc)
        for c in p.low + m.rest:
            assert c.spec.out_bits == pol.act_bits(c.layer)
        for c in p.head + p.branch8:
            assert c.spec.out_bits == 8
        if pol.vdpc:
            assert p.check.tensor == pol.classification_map
            assert (p.check.hi, p.check.lo) == vdpc_thresholds(pol)
            assert {r.tensor for r in p.requants} <= {c.layer for c in p.head} | {"input"}


@pytest.mark.parametrize("policy", ["int8", "quantmcu"])
def test_generator_needs_nothing_but_the_lowered_functions(shipped, tmp_path, policy):
    """Without the float layers the module keeps as its reference, the same firmware."""
    lowered = build("mbv2-fmnist", None, shipped("mbv2-fmnist", policy))
    bare = lowered.clone()
    del bare["quantmcu_layers"]
    a = generate_module(lowered, tmp_path / "a")
    b = generate_module(bare, tmp_path / "b")
    assert a.hash == b.hash and a.arena_bytes == b.arena_bytes
    assert (a.directory / "qmcu_model.c").read_text() == (b.directory / "qmcu_model.c").read_text()


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
    assert gen.hash != generate_module(build(imp, None, pol), tmp_path / "policy").hash
    x = test_images(40)
    want = Simulator(layer_graph(lowered), policy_of(lowered)).run(x)
    got = HostModel(gen).run(x)
    assert (got[0] == want[0]).all() and (got[1] == want[1]).all()


def _in_chunks(run, x, n=250):
    """run(x) as n images at a time: one batch of 10,000 images spends most of its time in
    the kernel (page faults of its large temporaries), about 2.5x the CPU time in all."""
    parts = [run(x[i:i + n]) for i in range(0, len(x), n)]
    return tuple(np.concatenate(p) for p in zip(*parts))


@pytest.mark.slow
@needs_gcc
@pytest.mark.parametrize("model", ["mbv2-fmnist", "mcunet-fmnist"])
@pytest.mark.parametrize("policy", ["int8", "quantmcu", VDPC_POLICY])
def test_c_vm_and_reference_agree_on_the_full_test_set(model, policy, shipped, test_images,
                                                         tmp_path):
    if not trained(model):
        pytest.skip(f"{model} has no trained checkpoint")
    lowered = build(model, None, shipped(model, policy))
    x = test_images(10_000, pipeline.load(model).input_size)
    want, want_flags = _in_chunks(Simulator(layer_graph(lowered), policy_of(lowered)).run, x)
    c_out, c_flags = HostModel(generate_module(lowered, tmp_path / "model")).run(x)
    np.testing.assert_array_equal(c_out, want)
    np.testing.assert_array_equal(c_flags, want_flags)
    vm_out, vm_flags = compile_vm(lowered, {"kind": "llvm", "opt-level": 0}).run(x)
    np.testing.assert_array_equal(vm_out, want)
    np.testing.assert_array_equal(vm_flags, want_flags)
    if policy_of(lowered).vdpc:
        assert want_flags.any() and not want_flags.all()    # both routes taken
