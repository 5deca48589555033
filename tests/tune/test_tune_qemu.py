"""Tuning on QEMU: a tiny run, database reuse, failed candidates recorded and skipped."""
import dataclasses
import json

import pytest

from micro_project import qemu
from tune_support import small_task
from tvm_quantmcu.topi import KernelSpec, get_kernel
from tvm_quantmcu.tune import space
from tvm_quantmcu.tune.database import TuningDatabase
from tvm_quantmcu.tune.tuner import Tuner

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(
    not qemu.have_toolchain(), reason="needs qemu-system-arm and arm-none-eabi-gcc")]


def _tune(db, task, trials, **kw):
    with Tuner(db, workers=2, **kw) as tuner:
        return tuner.tune([task], trials)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    db = tmp_path_factory.mktemp("tuning-db")
    task = small_task()
    return db, task, _tune(db, task, 3)


def test_tiny_run_measures_its_budget_and_keeps_the_best(tiny):
    db, task, res = tiny
    row = res["tasks"][0]
    assert row["status"] == "tuned" and row["trials"] == 3
    assert res["new_measurements"] == 3 and res["failed_trials"] == 0
    trials = [t for t in TuningDatabase(db).trials(task.key) if t["kind"] == "trial"]
    assert len(trials) == 3
    assert all(t["instructions"] > 0 for t in trials)
    seen = [json.dumps(t["knobs"], sort_keys=True) for t in trials]
    assert len(set(seen)) == 3                       # no candidate measured twice
    assert all(t["knobs"] != row["best_knobs"] or t["instructions"] == row["best_instructions"]
               for t in trials)
    best = min([row["default_instructions"]] + [t["instructions"] for t in trials])
    assert row["best_instructions"] == best
    # meta_schedule's database holds the default and the three trials
    mod = space.workload(task.spec, task.target)
    assert len(TuningDatabase(db).records(mod)) == 4


def test_rerun_with_the_same_database_measures_nothing(tiny):
    db, task, first = tiny
    res = _tune(db, task, 3)
    assert res["new_measurements"] == 0
    assert res["tasks"][0]["status"] == "finished"
    assert res["tasks"][0]["best_instructions"] == first["tasks"][0]["best_instructions"]
    assert len([t for t in TuningDatabase(db).trials(task.key) if t["kind"] == "trial"]) == 3


def test_a_larger_budget_continues_without_repeating(tiny):
    db, task, _ = tiny
    res = _tune(db, task, 5)
    assert res["new_measurements"] == 2 and res["tasks"][0]["trials"] == 5
    trials = [t for t in TuningDatabase(db).trials(task.key) if t["kind"] == "trial"]
    assert len({json.dumps(t["knobs"], sort_keys=True) for t in trials}) == 5


def _sabotaged(spec, schedule, target, knobs):
    """unroll_pixels=2 does not compile; unroll_pixels=4 faults on the device."""
    k = get_kernel(spec, schedule, target, knobs)
    if knobs.get("unroll_pixels") == 2:
        return dataclasses.replace(k, source=k.source + "\n#error deliberately broken\n")
    if knobs.get("unroll_pixels") == 4:
        head = f"void {k.name}("
        i = k.source.index("{", k.source.rindex(head)) + 1
        return dataclasses.replace(k, source=k.source[:i] + " __builtin_trap();" +
                                   k.source[i:])
    return k


def test_failed_candidates_are_recorded_and_tuning_goes_on(tmp_path):
    task = small_task(KernelSpec("depthwise", (9, 9, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1)))
    with Tuner(tmp_path, workers=2, kernel_factory=_sabotaged) as tuner:
        # a space of six points: xpad_at × unroll_pixels, the other knobs at their defaults
        d = space.default_indices()
        cands = {k: [i] for k, i in d.items()}
        cands["xpad_at"] = [d["xpad_at"], 1 - d["xpad_at"]]
        cands["unroll_pixels"] = [0, 1, 2]
        tuner.db.task(task.key)["space"] = space.KnobSpace(cands).to_json()
        res = tuner.tune([task], 5)
    row = res["tasks"][0]
    assert row["space"] == 6 and row["trials"] == 5
    trials = [t for t in TuningDatabase(tmp_path).trials(task.key) if t["kind"] == "trial"]
    assert len(trials) == 5
    by_unroll = {}
    for t in trials:
        by_unroll.setdefault(t["knobs"]["unroll_pixels"], []).append(t)
    for t in by_unroll[2]:
        assert t["instructions"] is None and "firmware build failed" in t["error"]
        assert "deliberately broken" in t["error"]
    for t in by_unroll[4]:
        assert t["instructions"] is None and "crashed or hung" in t["error"]
    assert len(by_unroll[1]) == 1 and by_unroll[1][0]["instructions"] > 0
    assert res["failed_trials"] == 4
    # failed records never win: the best is a kernel that ran
    assert row["best_knobs"]["unroll_pixels"] == 1
