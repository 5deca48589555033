"""A tuning database applied at compile time: the tuned kernels replace the defaults, and the
generated model still computes exactly what the integer reference does."""
import numpy as np
import pytest

from helpers import requires_dataset, requires_trained
from tvm_quantmcu.topi import schedules
from tvm_quantmcu.tune import kernel_lookup_from_db, space
from tvm_quantmcu.tune.database import TuningDatabase
from tvm_quantmcu.tune.tuner import ms_target

pytestmark = [requires_dataset, requires_trained("mbv2-fmnist")]

# Non-default knobs per op (their effect on a given spec does not matter here).
TUNED = {"depthwise": {"xpad_at": "pixel", "unroll_pixels": 2, "pixels": 1},
         "conv2d": {"unroll_pixels": 4, "pixels": 1}}
# The knobs that change the micro-kernels' structure (row-wide calls, in-register requant).
TUNED_ROW = {op: {"pixels": "row", "requant_at": "pair"} for op in ("depthwise", "conv2d")}


def _full_space() -> space.KnobSpace:
    """Every value of every knob, default first (no probing needed to write a record)."""
    d = space.default_indices()
    return space.KnobSpace({k: [d[k]] + [i for i in range(len(v)) if i != d[k]]
                            for k, v in space.knob_choices().items()})


def _record(db: TuningDatabase, spec, target, knobs, seconds):
    mod = space.workload(spec, target)
    idx = space.indices_from_knobs({**space.default_knobs(), **knobs})
    import tvm
    sch = space.apply_space(tvm.s_tir.Schedule(mod), _full_space(), idx)
    db.commit(mod, sch, seconds, ms_target(target))


@pytest.fixture(scope="module")
def model():
    from tvm_quantmcu import pipeline
    from tvm_quantmcu.models.policies import load_policy
    return pipeline.load("mbv2-fmnist").graph, load_policy("mbv2-fmnist", "quantmcu")


@pytest.mark.parametrize("tuned_knobs", [TUNED, TUNED_ROW], ids=["loops", "row"])
def test_tuned_model_equals_the_integer_reference(model, tmp_path, tuned_knobs):
    from tvm_quantmcu import data
    from tvm_quantmcu.codegen import build_program, generate_module
    from tvm_quantmcu.codegen.host import HostModel
    from tvm_quantmcu.quant import quantize_input
    from tvm_quantmcu.relax_build import lower
    from tvm_quantmcu.search.simulate import Simulator
    graph, pol = model
    target = "cortex-m4"
    lowered = lower(graph, pol)
    program = build_program(lowered, "mbv2-fmnist", target)
    specs = {c.kernel.spec for c in program.calls}
    # a depthwise and a pointwise kernel of the patch stage and of the layer-by-layer part
    picks = [next(c.kernel.spec for c in calls if c.kernel.spec.op == op)
             for calls in (program.head + program.branch_low, program.rest)
             for op in ("depthwise", "conv2d")]
    tuned = set(picks)
    db = TuningDatabase(tmp_path / "db")
    for s in tuned:          # the tuned schedule beats the default one
        _record(db, s, target, {}, 2e-3)
        _record(db, s, target, tuned_knobs[s.op], 1e-3)

    lookup = kernel_lookup_from_db(tmp_path / "db", target)
    assert all(lookup(s) is None for s in specs - tuned)
    gen = generate_module(lowered, tmp_path / "model", name="mbv2-fmnist", target=target,
                          kernel_lookup=lookup)
    used = {c.kernel.spec: c.kernel for c in gen.program.calls}
    for s in tuned:
        assert {k: used[s].knobs[k] for k in tuned_knobs[s.op]} == tuned_knobs[s.op]
    assert all({k: used[s].knobs[k] for k in schedules.DEFAULT_KNOBS} == schedules.DEFAULT_KNOBS
               for s in specs - tuned)

    x = quantize_input(data.load("test").images(64, 0, 3)).astype(np.uint8)
    out, routing = HostModel(gen).run(x)
    ref, flags = Simulator(graph, pol).run(x)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(routing, flags)


def test_default_knobs_win_ties(tmp_path):
    """A record within TIE of the default's time does not replace it (pixels="row" would cost
    scratch for nothing); a clear gain does."""
    from tvm_quantmcu.topi import KernelSpec
    from tvm_quantmcu.tune.database import TIE
    spec, target = KernelSpec("conv2d", (5, 5, 16), 16), "cortex-m4"
    mod = space.workload(spec, target)
    db = TuningDatabase(tmp_path / "db")
    _record(db, spec, target, {}, 1e-3)
    _record(db, spec, target, {"pixels": "row"}, 1e-3 * (1 - TIE / 2))
    assert db.best_knobs(mod) == space.default_knobs()
    _record(db, spec, target, {"requant_at": "pair"}, 1e-3 * (1 - 2 * TIE))
    assert db.best_knobs(mod) == {**space.default_knobs(), "requant_at": "pair"}
