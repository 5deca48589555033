"""Design space, workloads, features and the tuning database without a board."""
import numpy as np
import pytest
import tvm
import tvm_ffi

from tvm_quantmcu.topi import KernelSpec, get_kernel, schedules
from tvm_quantmcu.tune import TuningDatabaseError, kernel_lookup_from_db, space
from tvm_quantmcu.tune.database import TuningDatabase
from tvm_quantmcu.tune.features import candidate_features

DW_EVEN = KernelSpec("depthwise", (10, 10, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1))
PW = KernelSpec("conv2d", (6, 6, 16), 32)
ADD = KernelSpec("add", (4, 4, 16), 16)


def _source(spec, knobs):
    k = get_kernel(spec, space.SCHEDULE, "cortex-m4", {**space.default_knobs(), **knobs})
    return k.source.replace(k.name, "KERNEL")


def test_choices_cover_every_knob_with_its_default():
    ch = space.knob_choices()
    defaults = space.default_knobs()
    assert set(schedules.DEFAULT_KNOBS) <= set(ch) == set(defaults)
    # the knobs the registry applies when given none are the defaults
    assert get_kernel(PW, space.SCHEDULE, "cortex-m4").knobs == defaults
    for name, default in defaults.items():
        assert ch[name][space.default_indices()[name]] == default


@pytest.mark.parametrize("spec", [DW_EVEN, PW, ADD], ids=["dw3x3", "pw", "add"])
def test_space_keeps_exactly_the_values_that_change_the_code(spec):
    sp = space.probe_space(spec, "cortex-m4")
    base = _source(spec, {})
    ch = space.knob_choices()
    for name, values in ch.items():
        default_idx = values.index(space.default_knobs()[name])
        assert sp.candidates[name][0] == default_idx
        for i, v in enumerate(values):
            if i != default_idx:
                differs = _source(spec, {name: v}) != base
                assert (i in sp.candidates[name]) == differs, (name, v)
    assert sp.size >= 1


def test_points_skip_knobs_made_moot_by_others():
    from tvm_quantmcu.tune.strategy import points
    sp = space.probe_space(DW_EVEN, "cortex-m4")
    ch, base = space.knob_choices(), space.default_indices()
    pts = points(sp)
    row = [p for p in pts if ch["pixels"][p["pixels"]] == "row"]
    assert row and all(p["xpad_at"] == base["xpad_at"] and
                       p["unroll_pixels"] == base["unroll_pixels"] for p in row)
    assert len(pts) == len({tuple(sorted(p.items())) for p in pts}) < sp.size
    # the sources of the points are pairwise different: no trial on a duplicate binary
    srcs = {_source(DW_EVEN, space.knobs_from_indices(p)) for p in pts}
    assert len(srcs) == len(pts)


def test_workload_is_a_stable_key_per_spec_and_target():
    a, b = space.workload(DW_EVEN, "cortex-m4"), space.workload(DW_EVEN, "cortex-m4")
    assert tvm_ffi.structural_equal(a, b)
    assert not tvm_ffi.structural_equal(a, space.workload(DW_EVEN, "cortex-m7"))
    assert not tvm_ffi.structural_equal(a, space.workload(PW, "cortex-m4"))
    assert space.spec_of(a) == (DW_EVEN, "cortex-m4")


def test_decisions_round_trip_through_the_trace():
    sp = space.probe_space(DW_EVEN, "cortex-m4")
    mod = space.workload(DW_EVEN, "cortex-m4")
    sch = space.default_schedule(mod, sp)
    assert space.knobs_from_trace(mod, sch.trace) == space.default_knobs()
    name = next(k for k, c in sp.candidates.items() if len(c) > 1)
    other = {**space.default_indices(), name: sp.candidates[name][1]}
    sch2 = space.apply_space(tvm.s_tir.Schedule(mod), sp, other)
    knobs = space.knobs_from_trace(mod, sch2.trace)
    assert knobs[name] == space.knob_choices()[name][sp.candidates[name][1]]
    assert knobs != space.default_knobs()


def test_features_tell_candidates_and_tasks_apart():
    sp = space.probe_space(DW_EVEN, "cortex-m4")
    mod = space.workload(DW_EVEN, "cortex-m4")
    name = next(k for k, c in sp.candidates.items() if len(c) > 1)
    other = space.apply_space(tvm.s_tir.Schedule(mod), sp,
                              {**space.default_indices(), name: sp.candidates[name][1]})
    rows = [candidate_features(DW_EVEN, space.indices_from_mod(s.mod))
            for s in (space.default_schedule(mod, sp), other)]
    assert rows[0].shape == rows[1].shape and rows[0].shape[0] == 1
    assert not np.array_equal(rows[0], rows[1])
    assert not np.array_equal(rows[0], candidate_features(PW, space.default_indices()))


def test_lookup_refuses_a_directory_that_is_no_database(tmp_path):
    with pytest.raises(TuningDatabaseError, match=str(tmp_path)):
        kernel_lookup_from_db(tmp_path / "nowhere", "cortex-m4")


def test_lookup_without_records_keeps_the_default(tmp_path):
    TuningDatabase(tmp_path)                     # an empty database
    assert kernel_lookup_from_db(tmp_path, "cortex-m4")(DW_EVEN) is None


def test_lookup_returns_the_fastest_successful_record(tmp_path):
    from tvm_quantmcu.tune.tuner import ms_target
    db = TuningDatabase(tmp_path)
    sp = space.probe_space(DW_EVEN, "cortex-m4")
    mod = space.workload(DW_EVEN, "cortex-m4")
    name = next(k for k, c in sp.candidates.items() if len(c) > 1)
    other = space.apply_space(tvm.s_tir.Schedule(mod), sp,
                              {**space.default_indices(), name: sp.candidates[name][1]})
    db.commit(mod, other, None, ms_target("cortex-m4"))          # a failed trial
    assert kernel_lookup_from_db(tmp_path, "cortex-m4")(DW_EVEN) is None
    db.commit(mod, space.default_schedule(mod, sp), 2e-3, ms_target("cortex-m4"))
    db.commit(mod, other, 1e-3, ms_target("cortex-m4"))
    k = kernel_lookup_from_db(tmp_path, "cortex-m4")(DW_EVEN)
    assert k is not None and k.knobs[name] == space.knob_choices()[name][sp.candidates[name][1]]
    # the same spec on another target has no record
    assert kernel_lookup_from_db(tmp_path, "cortex-m7")(DW_EVEN) is None
