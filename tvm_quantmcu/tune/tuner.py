"""A tuning session: baseline, plan, search, report.

1. Baseline: every task's kernel with the default knobs is timed in one firmware (and its
   output, computed on the host, is what every candidate of the task must reproduce).
2. Plan: tasks are ranked by runs per inference × default instructions; the trial budget goes
   to the heaviest first, each task getting at most its design space minus the default. The
   budget is cumulative for the database: trials already spent on a task count, so re-running
   with the same budget measures nothing, and a larger budget continues where it stopped.
3. Search: per task, meta_schedule's tuning loop over the knob space (ScheduleFn): the
   untried points ranked by one XGBoost cost model shared by all tasks (strategy.py; the
   evolutionary search for spaces too large to enumerate), built by FirmwareBuilder, timed by
   BoardRunner, recorded by RecordTrials.
4. Report: per task the default and best instructions; the kernels' instructions per
   inference before and after.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import types
from contextlib import contextmanager
from pathlib import Path

from ..topi import registry
from . import space
from .builder import FirmwareBuilder, build_firmware
from .callbacks import RecordTrials
from .database import TuningDatabase
from .features import KnobFeatures
from .harness import Entry, expected_output
from .runner import BoardRunner
from .strategy import ENUMERATION_LIMIT, EnumerateByModel, point_key, points
from .tasks import Task



class TuneError(RuntimeError):
    """Tuning cannot start or go on (names what failed and what to do)."""


def ms_target(target: str):
    from tvm.target import Target
    return Target({"kind": "c", "mcpu": target} if target.startswith("cortex-") else
                  {"kind": "c"})


def run_timeout(instructions: int) -> float:
    """Seconds without an answer after which a candidate's board is declared hung: ten times a
    slow host's time for the default kernel, at least deploy.MIN_HANG_SECONDS."""
    from ..deploy import hang_timeout
    return hang_timeout(instructions, slack=10.0)


def baseline_timeout(tasks: list[Task]) -> float:
    """The same for the default kernels, from their MACs (two instructions per MAC)."""
    from ..deploy import hang_timeout
    return hang_timeout(2 * max((t.spec.macs for t in tasks), default=0), slack=10.0)


class Tuner:
    def __init__(self, db_dir, qemu_board: str = "mps2-an386", target: str = "cortex-m4",
                 workers: int | None = None, tracker: str | None = None,
                 key: str | None = None, seed: int = 0, trials_per_task: int | None = None,
                 kernel_factory=registry.get_kernel, bar_factory=None,
                 timeout: float | None = None):
        from micro_project import qemu
        from tvm.s_tir.meta_schedule.cost_model import XGBModel
        self.db = TuningDatabase(db_dir)
        self.qemu_board, self.target, self.seed = qemu_board, target, seed
        self.trials_per_task = trials_per_task
        self.kernel_factory, self.bar_factory = kernel_factory, bar_factory
        self.timeout = timeout          # hang detection (s); None: scaled per kernel
        self.workers = workers or os.cpu_count() or 1
        self.clock_hz = qemu.get_board(qemu_board).timer_hz
        self.work = Path(tempfile.mkdtemp(prefix="qmcu-tune-"))
        self.runner = BoardRunner(self.clock_hz, self.workers, tracker, key)
        self.builder = FirmwareBuilder(self.work / "candidates", qemu_board, self.workers,
                                       kernel_factory)
        self.cost_model = XGBModel(extractor=KnobFeatures(), num_warmup_samples=4,
                                   adaptive_training=False, num_tuning_cores=1)
        self.callback = RecordTrials(self.db, self.runner, ms_target(target))

    def close(self) -> None:
        self.runner.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- 1. baseline
    def baseline(self, tasks: list[Task]) -> None:
        todo = [t for t in tasks if not {"default_instructions", "default_error"}
                & set(self.db.task(t.key))]
        if not todo:
            return
        entries = [Entry(self.default_kernel(t), t) for t in todo]
        expected = [expected_output(e.kernel, e.task) for e in entries]
        from micro_project import ProjectError
        try:
            art = build_firmware(entries, expected, self.work / "baseline", self.qemu_board,
                                 self.timeout or baseline_timeout(todo))
        except ProjectError as e:
            raise TuneError(f"the baseline firmware (default schedules) does not build: {e}") \
                from None
        results = self.runner.measure_all(art)
        lost = [r for r in results if r.get("device_lost")]
        if lost:
            raise TuneError(f"the board failed while timing the default kernels: "
                            f"{lost[0]['error']}; check that the board runs (or raise "
                            f"--timeout for very slow kernels)")
        for t, r in zip(todo, results):
            rec = self.db.task(t.key)
            rec.update(spec=space.spec_to_json(t.spec), target=t.target, name=t.name)
            if r.get("error"):
                rec["default_error"] = r["error"]
            else:
                rec["default_instructions"] = r["instructions"]
            self.db.log_trial({"task": t.key, "kind": "baseline",
                               "knobs": space.default_knobs(),
                               "instructions": r.get("instructions") if not r.get("error")
                               else None, "error": r.get("error"),
                               "worker": r.get("worker"), "measured": True})
        self.db.save_tasks()

    def default_kernel(self, t: Task):
        return self.kernel_factory(t.spec, space.SCHEDULE, t.target,
                                   space.default_knobs())

    # ---- 2. plan
    def space_of(self, t: Task) -> space.KnobSpace:
        rec = self.db.task(t.key)
        sp = space.KnobSpace.from_json(rec["space"]) if "space" in rec else None
        if sp is None:
            sp = space.probe_space(t.spec, t.target, self.kernel_factory)
            rec["space"] = sp.to_json()
            self.db.save_tasks()
        return sp

    def priority(self, t: Task) -> float:
        return t.runs_per_inference * self.db.task(t.key).get("default_instructions", 0)

    def plan(self, tasks: list[Task], trials: int) -> list[tuple[Task, int]]:
        """(task, trials allotted), heaviest first."""
        ranked = sorted((t for t in tasks if "default_instructions" in self.db.task(t.key)),
                        key=self.priority, reverse=True)
        out, left = [], max(0, trials)
        for t in ranked:
            if left == 0:
                out.append((t, 0))
                continue
            want = len(points(self.space_of(t))) - 1        # its untried points
            if self.trials_per_task is not None:
                want = min(want, self.trials_per_task)
            n = min(want, left)
            left -= n
            out.append((t, n))
        planned = {t.key for t in ranked}
        return out + [(t, 0) for t in tasks if t.key not in planned]

    # ---- 3. search
    def search(self, t: Task, allotted: int) -> int:
        """Tune one task up to its allotment; returns the trials run now."""
        from tvm.s_tir.meta_schedule import TuneContext
        from tvm.s_tir.meta_schedule.measure_callback import UpdateCostModel
        from tvm.s_tir.meta_schedule.search_strategy import EvolutionarySearch
        from tvm.s_tir.meta_schedule.tune import tune_tasks
        rec = self.db.task(t.key)
        budget = allotted - rec.get("trials", 0)
        if budget <= 0 or rec.get("exhausted"):
            return 0
        sp, mod = self.space_of(t), space.workload(t.spec, t.target)
        default = rec["default_instructions"]
        self._seed_records(t, mod, sp, default)
        self.builder.add_task(t, expected_output(self.default_kernel(t), t),
                              self.timeout or run_timeout(default))
        known = {point_key(space.indices_from_knobs(json.loads(kj)))
                 for (key, kj) in self.builder.known if key == t.key}
        seed = self._task_seed(t)
        strategy = (EnumerateByModel(sp, known, seed, self.cost_model)
                    if sp.size <= ENUMERATION_LIMIT else
                    EvolutionarySearch(population_size=256, init_min_unmeasured=16))
        with _without_tvm_tensor_intrinsics():
            ctx = TuneContext(mod=mod, target=ms_target(t.target),
                              space_generator=space.schedule_fn(sp),
                              search_strategy=strategy, task_name=t.calls[0],
                              rand_state=seed, num_threads=1)
        self._warm_cost_model(ctx, t, mod, sp)
        bar = self.bar_factory(budget, _label(t)) if self.bar_factory else None
        self.callback.start(t, mod, bar, best=self._best_instructions(t))
        try:
            tune_tasks(tasks=[ctx], task_weights=[1.0], work_dir=str(self.work),
                       max_trials_global=budget, max_trials_per_task=budget,
                       num_trials_per_iter=min(budget, 2 * self.workers),
                       builder=self.builder, runner=self.runner, database=self.db.db,
                       cost_model=self.cost_model,
                       measure_callbacks=[self.callback, UpdateCostModel()],
                       task_scheduler="round-robin")
        finally:
            if bar is not None:
                bar.close()
        ran = self.callback.trials
        rec["trials"] = rec.get("trials", 0) + ran
        rec["allotted"] = allotted
        rec["exhausted"] = ran < budget      # the search ran out of untried candidates
        self.db.save_tasks()
        return ran

    def _task_seed(self, t: Task) -> int:
        return (self.seed * 1_000_003 + int(t.key[:8], 16)) % (1 << 31)

    def _seed_records(self, t: Task, mod, sp, default: int) -> None:
        """The default schedule as a record, and earlier results as answers to the builder."""
        exact = {json.dumps(e["knobs"], sort_keys=True): e for e in self.db.trials(t.key)}
        records = self.db.records(mod)
        if not any(k == space.default_knobs() for k, _ in records):
            self.db.commit(mod, space.default_schedule(mod, sp), default / self.clock_hz,
                           ms_target(t.target))
            records = self.db.records(mod)
        for knobs, secs in records:
            kj = json.dumps(knobs, sort_keys=True)
            e = exact.get(kj, {})
            if secs >= 1e9:
                ans = {"error": e.get("error") or "failed in an earlier session"}
            else:
                ans = {"instructions": e.get("instructions") or round(secs * self.clock_hz)}
            self.builder.known[(t.key, kj)] = ans

    def _warm_cost_model(self, ctx, t: Task, mod, sp) -> None:
        """Teach the cost model this task's known results (at least the default)."""
        from tvm.s_tir import Schedule
        from tvm.s_tir.meta_schedule.arg_info import ArgInfo
        from tvm.s_tir.meta_schedule.runner import RunnerResult
        from tvm.s_tir.meta_schedule.search_strategy import MeasureCandidate
        cands, results = [], []
        for (key, kj), ans in self.builder.known.items():
            if key != t.key or "instructions" not in ans:
                continue
            idx = space.indices_from_knobs(json.loads(kj))
            if any(idx.get(k) not in c for k, c in sp.candidates.items()):
                continue
            sch = space.apply_space(Schedule(mod), sp, idx)
            cands.append(MeasureCandidate(sch, ArgInfo.from_prim_func(mod["main"])))
            results.append(RunnerResult([ans["instructions"] / self.clock_hz], None))
        if cands:
            self.cost_model.update(ctx, cands, results)

    def _best_instructions(self, t: Task) -> int | None:
        ok = [e["instructions"] for e in self.db.trials(t.key) if e.get("instructions")
              and not e.get("error")]
        return min(ok) if ok else None

    # ---- 4. report
    def report(self, plan: list[tuple[Task, int]], searched: dict[str, int]) -> dict:
        rows, default_sum, tuned_sum = [], 0.0, 0.0
        scratch = {"default": 0, "tuned": 0}
        for t, allotted in plan:
            rec = self.db.task(t.key)
            d = rec.get("default_instructions")
            best, knobs = d, space.default_knobs()
            if d is not None and rec.get("trials"):
                bk = self.db.best_knobs(space.workload(t.spec, t.target))
                if bk is not None:
                    got = [e["instructions"] for e in self.db.trials(t.key)
                           if e.get("knobs") == bk and e.get("instructions")
                           and not e.get("error")]
                    if got:
                        best, knobs = min(got), bk
            size = _space_size(rec)
            status = ("baseline-failed" if d is None else
                      "tuned" if searched.get(t.key) else
                      "finished" if rec.get("trials") else
                      "no-knobs" if size == 1 else "no-budget")
            rows.append({"task": t.key, "name": t.name, "calls": t.calls,
                         "runs_per_inference": round(t.runs_per_inference, 4),
                         "space": size,
                         "allotted": allotted, "trials": rec.get("trials", 0),
                         "trials_now": searched.get(t.key, 0),
                         "default_instructions": d, "best_instructions": best,
                         "best_knobs": knobs, "status": status,
                         "error": rec.get("default_error"),
                         "speedup": round(d / best, 4) if d and best else None,
                         **self._scratch(t, knobs, scratch)})
            if d is not None:
                default_sum += t.runs_per_inference * d
                tuned_sum += t.runs_per_inference * best
        results = list(self.runner.results.values())
        workers: dict[str, int] = {}
        for r in results:
            if r.get("measured"):
                workers[r.get("worker", "?")] = workers.get(r.get("worker", "?"), 0) + 1
        return {"tasks": rows,
                "kernel_instructions_per_inference": {
                    "default": int(round(default_sum)), "tuned": int(round(tuned_sum)),
                    "ratio": round(tuned_sum / default_sum, 4) if default_sum else None},
                "kernel_scratch_bytes_max": scratch,
                "new_measurements": sum(workers.values()),
                "failed_trials": self.callback.failed,
                "measurements_by_worker": workers}

    def _scratch(self, t: Task, knobs: dict, most: dict) -> dict:
        """Stack scratch of the default and the best kernel (some knobs trade it for speed,
        e.g. pixels="row"); `most` keeps the largest of each."""
        try:
            d = self.default_kernel(t).scratch_bytes
            b = self.kernel_factory(t.spec, space.SCHEDULE, t.target, knobs).scratch_bytes
        except Exception:       # noqa: BLE001 — a kernel that does not build has no size
            return {"default_scratch_bytes": None, "best_scratch_bytes": None}
        most["default"], most["tuned"] = max(most["default"], d), max(most["tuned"], b)
        return {"default_scratch_bytes": d, "best_scratch_bytes": b}

    def tune(self, tasks: list[Task], trials: int) -> dict:
        clock = [time.monotonic()]

        def lap():
            clock.append(time.monotonic())
            return round(clock[-1] - clock[-2], 1)
        self.baseline(tasks)
        seconds = {"baseline": lap()}
        plan = self.plan(tasks, trials)
        seconds["plan"] = lap()
        searched = {}
        for t, n in plan:
            if n > 0:
                searched[t.key] = self.search(t, n)
        seconds["search"] = lap()
        return {**self.report(plan, searched), "phase_seconds": seconds}


@contextmanager
def _without_tvm_tensor_intrinsics():
    """TuneContext imports tvm.s_tir.tensor_intrin to register TVM's CUDA/x86/Arm tensor
    intrinsics for its schedule rules; parsing them takes over a minute here. Our design
    space uses no schedule rules (our kernels register their own intrinsics), so the import
    is answered with an empty module for the duration, and the real one stays importable."""
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    stub = sys.modules[name] = types.ModuleType(name)
    try:
        yield
    finally:
        if sys.modules.get(name) is stub:
            del sys.modules[name]


def _space_size(rec: dict) -> int | None:
    sp = space.KnobSpace.from_json(rec["space"]) if "space" in rec else None
    return len(points(sp)) if sp is not None else None


def _label(t: Task) -> str:
    return f"tune {t.calls[0]}{'+' if len(t.calls) > 1 else ''} {t.spec.op}"
