"""Search strategy for small knob spaces: every untried point once, best predicted first.

meta_schedule's evolutionary search is built for huge spaces explored by mutating traces; a
knob space has a handful of points and no mutators, and the evolutionary search re-proposes
points the database already holds from an earlier session (the default schedule included),
each costing a trial. This strategy enumerates the space, drops the points already measured,
ranks the rest with the cost model (XGBoost, trained across tasks) and hands out the best
``num_trials_per_iter`` per round. Until the cost model has data, the order is a shuffle seeded
by the task, so the same seed proposes the same candidates on any runner.
"""
from __future__ import annotations

import itertools
import random

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir import Schedule
from tvm.s_tir.meta_schedule.arg_info import ArgInfo
from tvm.s_tir.meta_schedule.search_strategy import MeasureCandidate, PySearchStrategy

from . import space as sp_

ENUMERATION_LIMIT = 4096       # larger spaces go to meta_schedule's evolutionary search


def points(space: sp_.KnobSpace) -> list[dict[str, int]]:
    """Every point of the space once: a point with a knob made moot by the others (e.g.
    xpad_at under pixels="row") appears only with that knob at its default."""
    names = list(space.candidates)
    return [p for p in (dict(zip(names, combo))
                        for combo in itertools.product(*(space.candidates[n] for n in names)))
            if sp_.canonical(p) == p]


def point_key(indices: dict[str, int]) -> tuple:
    return tuple(sorted(indices.items()))


@derived_object
class EnumerateByModel(PySearchStrategy):
    def __init__(self, space: sp_.KnobSpace, known: set[tuple], seed: int, model=None):
        """known: point_key()s already measured; model: the XGBModel instance (its
        warm-up state decides between its ranking and the seeded shuffle)."""
        super().__init__()
        self.space, self.known, self.seed, self.model = space, set(known), seed, model
        self.context = None

    def _initialize_with_tune_context(self, context) -> None:
        self.context = context

    def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None,
                   cost_model=None) -> None:
        self.max_trials, self.per_iter = int(max_trials), int(num_trials_per_iter)
        self.cost_model = cost_model
        self.pending = [p for p in points(self.space) if point_key(p) not in self.known]
        random.Random(self.seed).shuffle(self.pending)
        self.done = 0

    def post_tuning(self) -> None:
        self.pending = []

    def generate_measure_candidates(self):
        left = self.max_trials - self.done
        if left <= 0 or not self.pending:
            return None
        mod = self.context.mod
        args = ArgInfo.from_prim_func(mod["main"])
        cands = [MeasureCandidate(sp_.apply_space(Schedule(mod), self.space, p), args)
                 for p in self.pending]
        if self._model_ready():
            scores = np.asarray(self.cost_model.predict(self.context, cands), np.float64)
            order = [int(i) for i in np.argsort(-scores, kind="stable")]
        else:
            order = list(range(len(cands)))
        pick = order[:min(left, self.per_iter)]
        chosen = [cands[i] for i in pick]
        taken = set(pick)
        self.pending = [p for i, p in enumerate(self.pending) if i not in taken]
        return chosen

    def _model_ready(self) -> bool:
        m = self.model
        return (self.cost_model is not None and m is not None and
                getattr(m, "booster", None) is not None and
                m.data_size >= m.num_warmup_samples)

    def notify_runner_results(self, measure_candidates, results) -> None:
        self.done += len(results)

    def clone(self):
        return EnumerateByModel(self.space, self.known, self.seed, self.model)
