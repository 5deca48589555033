"""The tuning database: meta_schedule's JSONDatabase plus two files of ours, in one directory.

* ``database_workload.json`` / ``database_tuning_record.json`` — meta_schedule's JSON database:
  one workload per (kernel spec, target), one record per trial (the knob decisions as a trace;
  failed trials carry meta_schedule's 1e10 s).
* ``tasks.json`` — per task: its spec, design space, default-schedule instructions, trials spent
  and whether its search is finished (a finished task is never measured again).
* ``trials.jsonl`` — every trial with its knobs, exact instruction count or error, and the
  worker that measured it.

:func:`kernel_lookup_from_db` applies the database at compile time (``quantmcu deploy
--tuning-db``).
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from . import space

TASKS_FILE = "tasks.json"
TRIALS_FILE = "trials.jsonl"
DB_FILES = ("database_workload.json", "database_tuning_record.json")
FAILED_SECS = 1e9          # meta_schedule records a failed run as 1e10 s
TIE = 0.002                # relative difference below which a record does not beat another
TOP_K = 256                # records read per workload to find the default among the ties


class TuningDatabaseError(ValueError):
    """A --tuning-db / --db directory that cannot be used (names the path and the fix)."""


class TuningDatabase:
    def __init__(self, directory, create: bool = True):
        from tvm.s_tir.meta_schedule.database import JSONDatabase
        self.dir = Path(directory)
        if not create and not all((self.dir / f).exists() for f in DB_FILES):
            raise TuningDatabaseError(
                f"{self.dir} is not a tuning database (no {DB_FILES[1]}); create one with "
                f"`quantmcu tune --db {self.dir}`")
        if self.dir.exists() and not self.dir.is_dir():
            raise TuningDatabaseError(f"{self.dir} is a file; --db needs a directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.db = JSONDatabase(work_dir=str(self.dir), module_equality="structural")
        except Exception as e:  # noqa: BLE001 — TVM reports a bad record file in many ways
            first = str(e).strip().splitlines()[-1:] or [type(e).__name__]
            raise TuningDatabaseError(
                f"{self.dir}: the meta_schedule records ({', '.join(DB_FILES)}) cannot be read "
                f"({first[0][:160]}); remove the directory or give another --db") from None
        self._lock = threading.Lock()
        self.tasks: dict[str, dict] = self._read_tasks(self.dir / TASKS_FILE)

    @staticmethod
    def _read_tasks(p: Path) -> dict[str, dict]:
        if not p.exists():
            return {}
        try:
            tasks = json.loads(p.read_text())["tasks"]
            if not isinstance(tasks, dict) or not all(isinstance(v, dict)
                                                      for v in tasks.values()):
                raise ValueError("'tasks' is not an object of task records")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise TuningDatabaseError(
                f"{p} is not a task file of `quantmcu tune` ({type(e).__name__}: {e}); remove "
                f"it (the measurements in {TRIALS_FILE} stay) or give another --db") from None
        return tasks

    # ---- our files
    def save_tasks(self) -> None:
        p = self.dir / TASKS_FILE
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": 1, "tasks": self.tasks}, indent=1) + "\n")
        os.replace(tmp, p)

    def task(self, key: str) -> dict:
        return self.tasks.setdefault(key, {})

    def log_trial(self, entry: dict) -> None:
        with self._lock, open(self.dir / TRIALS_FILE, "a") as f:
            f.write(json.dumps({**entry, "time": round(time.time(), 3)}) + "\n")

    def trials(self, key: str | None = None) -> list[dict]:
        p = self.dir / TRIALS_FILE
        if not p.exists():
            return []
        out = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        return [t for t in out if key is None or t.get("task") == key]

    # ---- meta_schedule records
    def workload(self, mod):
        return self.db.commit_workload(mod)

    def commit(self, mod, sch, seconds: float | None, target) -> None:
        from tvm.s_tir.meta_schedule.arg_info import ArgInfo
        from tvm.s_tir.meta_schedule.database import TuningRecord
        rec = TuningRecord(sch.trace, self.workload(mod),
                           [seconds if seconds is not None else 1e10], target,
                           ArgInfo.from_prim_func(mod["main"]))
        self.db.commit_tuning_record(rec)

    def records(self, mod) -> list[tuple[dict, float]]:
        """(knobs, seconds) of every record of the workload, best first."""
        if not self.db.has_workload(mod):
            return []
        wl = self.db.commit_workload(mod)
        recs = self.db.get_top_k(wl, 1 << 20)
        return [(space.knobs_from_trace(mod, r.trace), float(r.run_secs[0]))
                for r in recs if r.run_secs]

    def best_knobs(self, mod) -> dict | None:
        """Knobs of the fastest successful record, None when the workload has none. The
        default knobs win unless beaten by more than TIE: a gain within the timer's noise is
        not worth what some knobs cost besides time (pixels="row": scratch)."""
        if not self.db.has_workload(mod):
            return None
        ok = [(float(r.run_secs[0]), r) for r in self.db.get_top_k(
              self.db.commit_workload(mod), TOP_K) if r.run_secs
              and float(r.run_secs[0]) < FAILED_SECS]
        if not ok:
            return None
        best = space.knobs_from_trace(mod, ok[0][1].trace)
        default = space.default_knobs()
        for secs, r in ok:
            if secs > ok[0][0] * (1 + TIE):
                break
            if space.knobs_from_trace(mod, r.trace) == default:
                return default
        return best


def kernel_lookup_from_db(db_dir, target: str):
    """lookup(spec) → the best tuned Kernel for `spec` on `target`, or None when the database
    holds no successful record for it (the caller then uses its default schedule)."""
    from ..topi import registry
    db = TuningDatabase(db_dir, create=False)
    cache: dict = {}

    def lookup(spec):
        if spec not in cache:
            knobs = db.best_knobs(space.workload(spec, target))
            cache[spec] = None if knobs is None else \
                registry.get_kernel(spec, space.SCHEDULE, target, knobs)
        return cache[spec]
    return lookup
