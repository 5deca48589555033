"""Flash that is real: the weights section the search reports for a policy is the one its
linked firmware has, and sub-byte weights make it smaller."""
import dataclasses

import numpy as np
import pytest

from helpers import VDPC_POLICY, have, requires_dataset
from tvm_quantmcu import search
from tvm_quantmcu.codegen import build_program, generate_module, weight_constants
from tvm_quantmcu.codegen.report import flash_by_section, linked_weights_bytes
from tvm_quantmcu.topi import wpack
from tvm_quantmcu.relax_build import lower
from tvm_quantmcu.topi.params import CONST_ALIGN, stored_bytes

pytestmark = requires_dataset

# 2-bit outputs of the depthwise layers of the last blocks feed their 1×1 projections, whose
# weights are 4-bit: the a2w4 kernels read them packed.
LOW_MAPS = ("l21", "l25", "l28")
W4_LAYERS = ("l22", "l26", "l29")


def w4_policy(int8):
    return dataclasses.replace(int8, name="w4-projections",
                               bits_low={t: 2 for t in LOW_MAPS},
                               ranges_low={t: list(int8.ranges8[t]) for t in LOW_MAPS},
                               w_bits={l: 4 for l in W4_LAYERS})


# 4-bit weights on the largest layers, all activations 8-bit: stored narrow (topi/wnib.py)
NARROW_LAYERS = ("l20", "l22", "l24", "l26", "l27", "l29", "l31")


def narrow_policy(int8):
    return dataclasses.replace(int8, name="w4-int8-activations",
                               w_bits={l: 4 for l in NARROW_LAYERS})


def _policies(shipped):
    int8 = shipped("mbv2-fmnist", "int8")
    return {"int8": int8, "quantmcu": shipped("mbv2-fmnist", "quantmcu"),
            "w4": w4_policy(int8), "w4-narrow": narrow_policy(int8)}


def test_pool_counts_each_distinct_array_once_word_aligned(mbv2_graph, shipped):
    pol = shipped("mbv2-fmnist", VDPC_POLICY)
    prog = build_program(lower(mbv2_graph, pol), "m", compile_kernels=False)
    distinct = {a.dtype.str.encode() + a.tobytes(): a for c in prog.calls
                for a in c.params.arrays()}
    pool = weight_constants(lower(mbv2_graph, pol))
    assert pool.bytes() == sum(stored_bytes(a) for a in distinct.values())
    assert pool.bytes() % CONST_ALIGN == 0
    # the VDPC branches keep two copies only of the arrays that differ
    both = sum(stored_bytes(a) for c in prog.calls for a in c.params.arrays())
    assert pool.bytes() < both


def test_search_flash_is_the_generated_weights(mbv2_graph, shipped):
    """What the search tables report is the pool of the emitted constants (no estimate)."""
    for pol in _policies(shipped).values():
        assert search.weight_bytes(mbv2_graph, pol) == weight_constants(
            lower(mbv2_graph, pol)).bytes()


def test_packed_sub_byte_weights_shrink_the_pool(mbv2_graph, shipped):
    pols = _policies(shipped)
    int8, w4 = (search.weight_bytes(mbv2_graph, pols[k]) for k in ("int8", "w4"))
    # the three projections' weights shrink to the packed layout (4 bits a weight, plus the
    # per-channel exponents); their per-channel bias/multiplier/shift arrays (4 bytes each) may
    # be shared with other layers' differently than at int8
    shapes = [(64, 256), (96, 256), (96, 384)]
    saved = sum(oc * c - wpack.storage_bytes(oc, 1, c, 2, 4) for oc, c in shapes)
    slack = 3 * 4 * sum(oc for oc, _ in shapes)
    assert saved > 36000
    assert int8 - saved - slack <= w4 <= int8 - saved + slack, (int8, w4, saved)


@pytest.mark.skipif(not have("arm-none-eabi-gcc") or not have("arm-none-eabi-nm"),
                    reason="needs the Arm toolchain (apt-get install gcc-arm-none-eabi "
                           "libnewlib-arm-none-eabi binutils-arm-none-eabi)")
def test_linked_weights_section_equals_search_flash(mbv2_graph, shipped, tmp_path):
    """≥ 2 policies: the firmware is built and linked for the Cortex-M4 board, and the span
    of its weight constants in the ELF is the figure the search reports, within the
    alignment padding of the last constant; 4-bit weights link smaller than int8."""
    import micro_project
    linked = {}
    for key, pol in _policies(shipped).items():
        gen = generate_module(lower(mbv2_graph, pol), tmp_path / key / "model")
        project = micro_project.get_template("qemu").generate_project(
            gen.directory, tmp_path / key / "project", {})
        elf = project.build()
        reported = search.weight_bytes(mbv2_graph, pol)
        linked[key] = linked_weights_bytes(elf, gen.meta["weight_symbols"], "arm-none-eabi-nm")
        assert linked[key] is not None, f"{key}: weight constants missing from {elf}"
        assert reported - CONST_ALIGN < linked[key] <= reported, (key, reported, linked[key])
        obj = flash_by_section(gen)["weights"]
        assert reported - CONST_ALIGN < obj <= reported, (key, reported, obj)
    assert linked["w4"] < linked["int8"] * 0.9, linked
    assert linked["w4-narrow"] < linked["int8"] * 0.7, linked


def test_narrow_weights_host_c_equals_simulator(mbv2_graph, shipped, test_images, tmp_path):
    """4-bit weights of 8-bit-input layers, stored narrow, run bit-exactly in the firmware's
    C (host build) against the integer simulator."""
    from tvm_quantmcu.codegen.host import HostModel
    from tvm_quantmcu.search.simulate import Simulator
    pol = narrow_policy(shipped("mbv2-fmnist", "int8"))
    gen = generate_module(lower(mbv2_graph, pol), tmp_path / "model")
    narrow = [c for c in gen.program.calls if c.layer in NARROW_LAYERS]
    assert narrow and all("qmcu_conv_wn" in c.kernel.source for c in narrow)
    x = test_images(32)
    out, _ = HostModel(gen).run(x)
    ref, _ = Simulator(mbv2_graph, pol).run(x)
    np.testing.assert_array_equal(out, ref)


def test_memory_driven_flash_budget_is_met_by_the_firmware_figure(mbv2_graph, shipped):
    """The memory-driven rule cuts weights measured on the firmware's constants; its budget
    then holds for the weights section, and 8-bit activations no longer block it."""
    from tvm_quantmcu.search.baselines import BudgetError, cut_weights
    int8 = shipped("mbv2-fmnist", "int8")
    full = search.weight_bytes(mbv2_graph, int8)
    pol = cut_weights(mbv2_graph, int8, int(full * 0.7))
    assert search.weight_bytes(mbv2_graph, pol) <= full * 0.7
    assert pol.w_bits and all(b < 8 for b in pol.w_bits.values())
    with pytest.raises(BudgetError, match="cannot be met"):
        cut_weights(mbv2_graph, int8, full // 10)


def test_weight_symbols_are_emitted_once(mbv2_graph, shipped, tmp_path):
    lowered = lower(mbv2_graph, shipped("mbv2-fmnist", "int8"))
    gen = generate_module(lowered, tmp_path / "m")
    src = (gen.directory / "qmcu_model.c").read_text()
    syms = gen.meta["weight_symbols"]
    assert len(set(syms)) == len(syms)
    assert all(src.count(f" {s}[") == 1 for s in syms)
    assert gen.meta["const_bytes"]["weights"] == weight_constants(lowered).bytes()
    assert np.isfinite(gen.meta["const_bytes"]["weights"])
