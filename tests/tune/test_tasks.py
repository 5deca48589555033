"""Tasks of a model (distinct specs weighted by runs per inference) and the trial plan."""
from types import SimpleNamespace

import pytest

from tune_support import small_task
from tvm_quantmcu.topi import KernelSpec
from tvm_quantmcu.tune.strategy import points
from tvm_quantmcu.tune.tasks import call_runs, extract_tasks
from tvm_quantmcu.tune.tuner import Tuner


def _call(tag, spec, params):
    from tvm_quantmcu.codegen.layout import Call
    h, w, _ = spec.in_shape
    kernel = SimpleNamespace(spec=spec, target="cortex-m4")
    return SimpleNamespace(tag=tag, kernel=kernel, params=params, windows=[Call(h, w, 0, 0)])


@pytest.fixture
def program():
    """A program shaped like a VDPC one: 2×2 patches, a head, both branches, the rest."""
    a, b, c = (small_task(KernelSpec("depthwise", (6 + i, 6, 8), 8, (3, 3))) for i in range(3))
    head = [_call("l0", a.spec, a.params)]
    branch8 = [_call("l1_8", b.spec, b.params), _call("l2_8", c.spec, c.params)]
    b_low = small_task(b.spec, seed=1).params          # same spec, other quantization
    branch_low = [_call("l1_low", b.spec, b_low), _call("l2_low", a.spec, a.params)]
    rest = [_call("l3", c.spec, c.params), _call("l4", c.spec, c.params)]
    return SimpleNamespace(head=head, branch8=branch8, branch_low=branch_low, rest=rest,
                           calls=head + branch8 + branch_low + rest, tiles=[0] * 4,
                           plan=object(), vdpc={"map": "t"})


def test_tasks_are_the_distinct_specs_weighted_by_runs(program):
    rate = 0.25
    runs = call_runs(program, rate)
    assert runs == [4, 1, 1, 3, 3, 1, 1]      # patches × (1, rate, 1 - rate), then once
    tasks = {t.calls[0]: t for t in extract_tasks(program, rate)}
    assert {k: t.calls for k, t in tasks.items()} == {
        "l0": ["l0", "l2_low"], "l1_8": ["l1_8", "l1_low"], "l2_8": ["l2_8", "l3", "l4"]}
    assert {k: t.runs_per_inference for k, t in tasks.items()} == {
        "l0": 7, "l1_8": 4, "l2_8": 3}
    # each task is timed on the parameters of its most frequent call
    assert tasks["l1_8"].params is program.branch_low[0].params
    assert sorted(i for t in tasks.values() for i in t.call_ids) == list(range(7))


def test_plan_spends_the_budget_on_the_heaviest_tasks_first(tmp_path):
    light = small_task(KernelSpec("depthwise", (6, 6, 8), 8, (3, 3), (1, 1), (1, 1, 1, 1)),
                       runs=1.0, tag="light")
    heavy = small_task(runs=4.0, tag="heavy")
    middle = small_task(KernelSpec("depthwise", (9, 9, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1)),
                        runs=2.0, tag="middle")
    with Tuner(tmp_path) as tuner:
        for t, instr in ((light, 50_000), (heavy, 80_000), (middle, 60_000)):
            tuner.db.task(t.key)["default_instructions"] = instr
        sizes = {t.key: len(points(tuner.space_of(t))) for t in (light, heavy, middle)}
        budget = sizes[heavy.key] - 1 + 2
        plan = tuner.plan([light, heavy, middle], budget)
    assert [t.calls[0] for t, _ in plan] == ["heavy", "middle", "light"]
    assert [n for _, n in plan] == [sizes[heavy.key] - 1, 2, 0]
