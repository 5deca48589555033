"""The measure callback of a tuning session: after each batch of candidates, commit the new
results to the database (meta_schedule records + our trial log, errors included), skip the
answers that came from the database itself, and advance the task's progress bar."""
from __future__ import annotations

from pathlib import Path

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

from . import space


@derived_object
class RecordTrials(PyMeasureCallback):
    def __init__(self, db, runner, target):
        super().__init__()
        self.db, self.runner, self.target = db, runner, target
        self.task = None          # the Task being searched, set by the tuner
        self.mod = None
        self.bar = None
        self.trials = 0           # new candidates of the current task (not database answers)
        self.best: int | None = None
        self.failed = 0           # failed new trials of the session (all tasks)

    def start(self, task, mod, bar=None, best: int | None = None) -> None:
        self.task, self.mod, self.bar, self.trials, self.best = task, mod, bar, 0, best

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
              runner_results):
        for cand, br, rr in zip(measure_candidates, builder_results, runner_results):
            knobs = space.knobs_from_mod(cand.sch.mod)
            res = self.runner.results.get(str(Path(br.artifact_path).parent), {}) \
                if br.artifact_path else {}
            entry = {"task": self.task.key, "kind": "trial", "knobs": knobs,
                     "instructions": None if (res.get("error") or br.error_msg)
                     else res.get("instructions"),
                     "error": br.error_msg or rr.error_msg or None,
                     "worker": res.get("worker"), "measured": bool(res.get("measured")),
                     "cached": bool(res.get("cached"))}
            if not entry["cached"]:
                self.trials += 1
                self.failed += entry["error"] is not None
                secs = [float(s) for s in rr.run_secs] if rr.run_secs else None
                self.db.commit(self.mod, cand.sch, secs[0] if secs else None, self.target)
                self.db.log_trial(entry)
            if entry["instructions"] is not None and (self.best is None or
                                                      entry["instructions"] < self.best):
                self.best = entry["instructions"]
        if self.bar is not None:
            self.bar.update(len(measure_candidates))
            if self.best is not None:
                self.bar.set_postfix_str(f"best {self.best:,} instr")
