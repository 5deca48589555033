"""meta_schedule Builder: a candidate (the knob decisions of a task) → its C kernel
(``topi.registry.get_kernel``, i.e. ``schedules.schedule`` + ``build.build_c``) → a timing
firmware built with the project API's qemu template.

Candidates whose C equals one already built for the task share its artifact (the runner then
times it once), and candidates the database already holds from an earlier session are answered
from it without building: a resumed task measures only what is new.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder

from ..topi import registry
from . import space
from .harness import Entry, write_timing_model
from .measure import write_meta
from .tasks import Task


def build_firmware(entries: list[Entry], expected: list[bytes | None], directory,
                   qemu_board: str, run_timeout: float = 10.0, time_limit: int = 120,
                   extra: list[dict] | None = None) -> Path:
    """Write the timing library of `entries` and build it into ``directory/project``; returns
    the artifact directory (see measure.py). Raises micro_project.ProjectError on a build
    failure (the compiler's message included)."""
    import micro_project
    d = Path(directory)
    if d.exists():
        shutil.rmtree(d)
    model = d / "model"
    meta = write_timing_model(entries, model)
    project = micro_project.get_template("qemu").generate_project(
        model, d / "project", {"board": qemu_board})
    project.build()
    kernels = []
    for i, (e, want) in enumerate(zip(entries, expected)):
        k = {"name": e.kernel.name, "task": e.task.key, "output_bytes": e.out_bytes,
             "expected": want.hex() if want is not None else None}
        if extra:
            k.update(extra[i])
        kernels.append(k)
    write_meta(d, {"hash": meta["hash"], "board": qemu_board, "kernels": kernels,
                   "run_timeout": run_timeout, "time_limit": time_limit})
    return d


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@derived_object
class FirmwareBuilder(PyBuilder):
    """Builds candidates of the registered tasks; `known[(task_key, knobs_json)]` holds
    results of earlier sessions (from the database)."""

    def __init__(self, work_dir, qemu_board: str, workers: int = 1,
                 kernel_factory=registry.get_kernel):
        super().__init__()
        self.work_dir = Path(work_dir)
        self.qemu_board = qemu_board
        self.workers = max(1, workers)
        self.kernel_factory = kernel_factory
        self.tasks: dict[str, Task] = {}
        self.expected: dict[str, bytes] = {}          # task key → default kernel's output
        self.run_timeout: dict[str, float] = {}       # task key → seconds
        self.known: dict[tuple[str, str], dict] = {}
        self._built: set[Path] = set()                # artifact dirs of this session
        self._failed: dict[Path, str] = {}

    def add_task(self, task: Task, expected: bytes, run_timeout: float) -> None:
        self.tasks[task.key] = task
        self.expected[task.key] = expected
        self.run_timeout[task.key] = run_timeout

    def build(self, build_inputs):
        results: list[BuilderResult | None] = [None] * len(build_inputs)
        pending: dict[Path, tuple] = {}          # artifact dir → build args (built once)
        waiting: list[tuple[int, Path]] = []
        for i, bi in enumerate(build_inputs):
            try:
                d, args = self._prepare(bi.mod)
            except Exception as e:  # noqa: BLE001 — recorded as a failed trial
                results[i] = BuilderResult(None, f"kernel generation failed: "
                                                 f"{type(e).__name__}: {e}")
                continue
            if args is not None:
                pending[d] = args
            waiting.append((i, d))
        with ThreadPoolExecutor(self.workers) as pool:      # gcc runs in parallel
            futures = {d: pool.submit(self._build_one, *a) for d, a in pending.items()}
        for d, f in futures.items():
            if f.exception() is not None:     # a later identical candidate fails the same way
                self._failed[d] = f"firmware build failed: {f.exception()}"
        for i, d in waiting:
            err = self._failed.get(d)
            results[i] = BuilderResult(None, err) if err else \
                BuilderResult(str(d / "measure.json"), None)
        return results

    def _prepare(self, mod) -> tuple[Path, tuple | None]:
        """(artifact dir, build args), args None when the dir is built or answered already."""
        key = space.task_key_of(mod)
        task = self.tasks[key]
        knobs = space.knobs_from_mod(mod)
        knobs_json = json.dumps(knobs, sort_keys=True)
        if (key, knobs_json) in self.known:
            d = self.work_dir / key / f"known-{_digest(knobs_json)}"
            d.mkdir(parents=True, exist_ok=True)
            write_meta(d, {"cached": self.known[(key, knobs_json)], "knobs": knobs,
                           "kernels": []})
            return d, None
        kernel = self.kernel_factory(task.spec, space.SCHEDULE, task.target, knobs)
        d = self.work_dir / key / _digest(kernel.source.replace(kernel.name, "KERNEL"))
        if d in self._built:
            return d, None
        self._built.add(d)
        return d, (task, kernel, knobs, d)

    def _build_one(self, task: Task, kernel, knobs: dict, d: Path) -> Path:
        from micro_project import ProjectError
        try:
            return build_firmware([Entry(kernel, task)], [self.expected[task.key]], d,
                                  self.qemu_board, self.run_timeout[task.key],
                                  extra=[{"knobs": knobs}])
        except ProjectError as e:
            raise RuntimeError(_short(str(e))) from None


def _short(msg: str, head: int = 300, tail: int = 1500) -> str:
    """The start (what failed) and the end (the compiler's errors) of a long message."""
    return msg if len(msg) <= head + tail else f"{msg[:head]} … {msg[-tail:]}"
