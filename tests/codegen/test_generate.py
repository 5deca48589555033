"""The C library generated from the lowered module equals the integer simulator bit-exactly
(outputs and routing)."""
import subprocess

import numpy as np
import pytest

from helpers import VDPC_POLICY, have, requires_dataset, with_grid
from tvm_quantmcu.codegen import build_program, generate_module
from tvm_quantmcu.patch.arena import check_arena, lower_bound
from tvm_quantmcu.codegen.host import HostModel
from tvm_quantmcu.relax_build import lower
from tvm_quantmcu.search.simulate import Simulator

pytestmark = requires_dataset


def generate(graph, pol, out_dir, **kw):
    """The C library of `graph` under `pol`, generated from the module the passes lower."""
    return generate_module(lower(graph, pol), out_dir, pol.model, **kw)


def _host_equals_simulator(graph, pol, x, tmp_path):
    gen = generate(graph, pol, tmp_path / "model")
    out, routing = HostModel(gen).run(x)
    ref, flags = Simulator(graph, pol).run(x)
    mism = np.flatnonzero((out != ref).any(axis=1))
    assert mism.size == 0, f"{pol.name}: outputs differ on images {mism[:10].tolist()}"
    assert (routing == flags).all(), f"{pol.name}: routing decisions differ"
    return gen, flags


@pytest.mark.parametrize("policy", ["int8", "quantmcu", VDPC_POLICY])
def test_host_c_equals_simulator(mbv2_graph, shipped, test_images, tmp_path, policy):
    pol = shipped("mbv2-fmnist", policy)
    gen, flags = _host_equals_simulator(mbv2_graph, pol, test_images(120), tmp_path)
    if pol.vdpc:
        # both branches ran: some patches were routed to 8 bits, most were not
        assert 0 < flags.mean() < 0.5
    else:
        assert not flags.any()
    assert gen.meta["patches"] == pol.grid[0] * pol.grid[1]


@pytest.mark.parametrize("grid", [(4, 4), (3, 2)])
def test_interior_and_uneven_patches(mbv2_graph, shipped, test_images, tmp_path, grid):
    """Grids with interior patches and unequal tiles: held regions are extended inwards and
    kernels read them through negative padding."""
    pol = with_grid(shipped("mbv2-fmnist", "quantmcu"), grid)
    _host_equals_simulator(mbv2_graph, pol, test_images(24), tmp_path)


@pytest.mark.parametrize("policy", ["int8", "quantmcu"])
def test_arena_matches_planner(mbv2_graph, shipped, policy):
    pol = shipped("mbv2-fmnist", policy)
    prog = build_program(lower(mbv2_graph, pol), "mbv2-fmnist", "host")
    bufs = list(prog.buffers.values())
    check_arena(bufs)
    assert prog.arena_bytes >= lower_bound(bufs)
    assert prog.arena_bytes == prog.predicted_peak


def test_kernel_instances_do_not_grow_with_patches(mbv2_graph, shipped):
    pol = shipped("mbv2-fmnist", "quantmcu")
    n = {g: len(build_program(lower(mbv2_graph, with_grid(pol, g)), "m", "host").kernels)
         for g in ((2, 2), (4, 4))}
    assert n[(4, 4)] == n[(2, 2)]


@pytest.mark.skipif(not have("arm-none-eabi-gcc"), reason="needs arm-none-eabi-gcc "
                    "(apt-get install gcc-arm-none-eabi)")
def test_flash_grows_little_with_grid(mbv2_graph, shipped, tmp_path):
    from tvm_quantmcu.codegen.report import flash_by_section
    pol = shipped("mbv2-fmnist", "quantmcu")
    fl = {g: flash_by_section(generate(mbv2_graph, with_grid(pol, g), tmp_path / f"{g}"))
          for g in ((2, 2), (4, 4))}
    small, big = fl[(2, 2)]["flash_total"], fl[(4, 4)]["flash_total"]
    assert big < 1.10 * small, (small, big)
    assert fl[(2, 2)]["weights"] > 0 and fl[(2, 2)]["code"] > 0


@pytest.mark.skipif(not have("arm-none-eabi-gcc"), reason="needs arm-none-eabi-gcc")
def test_cortex_m_build_is_warning_free(mbv2_graph, shipped, tmp_path):
    gen = generate(mbv2_graph, shipped("mbv2-fmnist", "quantmcu"), tmp_path / "m")
    for src in gen.sources:
        p = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-O2",
                            "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{gen.directory}",
                            "-c", str(src), "-o", str(tmp_path / "x.o")],
                           capture_output=True, text=True)
        assert p.returncode == 0, f"{src.name}: {p.stderr[:2000]}"


def test_needs_a_lowered_module(mbv2_graph, shipped, tmp_path):
    from tvm_quantmcu.canonical import graph_to_relax
    from tvm_quantmcu.codegen import LoweredModuleError
    with pytest.raises(LoweredModuleError, match="quantmcu.quantization.*LowerToQuantMCUKernels"):
        generate_module(graph_to_relax(mbv2_graph), tmp_path / "m")
    assert not (tmp_path / "m").exists()        # nothing half-written


def test_foreign_kernel_call_is_named(mbv2_graph, shipped, tmp_path):
    """A call_tir to a TIR function that is not one of our kernels."""
    from tvm_quantmcu.codegen import LoweredModuleError
    mod = lower(mbv2_graph, shipped("mbv2-fmnist", "int8"))
    gv = next(gv for gv, f in mod.functions.items()
              if f.attrs is not None and "quantmcu.spec" in f.attrs)
    mod[gv] = mod[gv].without_attr("quantmcu.spec")
    with pytest.raises(LoweredModuleError, match=f"call_tir of {gv.name_hint}"):
        generate_module(mod, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_unsupported_kernel_names_layer(mbv2_graph, shipped):
    import copy

    from relax_passes import QuantPassError
    g = copy.deepcopy(mbv2_graph)
    conv = next(l for l in g.layers[8:] if l.op == "conv2d" and l.ksize() == (3, 3)
                and tuple(l.stride) == (1, 1))
    conv.dilation, conv.padding = (2, 2), (2, 2, 2, 2)     # the same output shape
    # the lowering names the layer (a pass error crosses TVM's FFI as a RuntimeError)
    with pytest.raises((QuantPassError, RuntimeError), match=f"{conv.name}.*dilation"):
        lower(g, shipped("mbv2-fmnist", "int8"))


def test_refuses_foreign_output_directory(mbv2_graph, shipped, tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a generated model"):
        generate(mbv2_graph, shipped("mbv2-fmnist", "int8"), d)
    assert (d / "notes.txt").read_text() == "keep"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mbv2-fmnist", "mcunet-fmnist"])
@pytest.mark.parametrize("policy", ["int8", "quantmcu"])
def test_full_test_set(model, policy, shipped, test_images, tmp_path):
    from tvm_quantmcu import pipeline
    g = pipeline.load(model).graph
    _host_equals_simulator(g, shipped(model, policy), test_images(10000), tmp_path)
