"""Tuning tasks of a model: the distinct kernel specs of its generated program, each weighted by
how often its calls run per inference.

In the patch stage every call runs once per patch; with VDPC the 8-bit continuation runs only
for outlier patches and the low-bit one for the others, so their runs are scaled by the outlier
rate (estimated with the integer simulator on validation images). Layer-by-layer calls run once.
A task is timed with the real parameters and patch-0 window of its most frequent call.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import data
from ..codegen.layout import Call
from ..quant import quantize_input
from ..search.simulate import Simulator
from ..topi.compute import KernelSpec
from ..topi.params import KernelParams
from .space import task_key

OUTLIER_IMAGES = 64


@dataclass(eq=False)
class Task:
    key: str
    spec: KernelSpec
    target: str
    params: KernelParams          # of the representative call
    window: Call                  # its first window (patch 0)
    calls: list[str] = field(default_factory=list)     # call tags, e.g. ["l4_low"]
    call_ids: list[int] = field(default_factory=list)  # indices into Program.calls
    runs_per_inference: float = 0.0

    @property
    def name(self) -> str:
        return f"{'+'.join(self.calls)}: {self.spec.describe()}"


def call_runs(program, outlier_rate: float) -> list[float]:
    """Expected runs per inference of each call of program.calls."""
    patches = len(program.tiles) if program.plan is not None else 0
    vdpc = program.vdpc is not None
    runs = []
    runs += [float(patches)] * len(program.head)
    runs += [patches * outlier_rate] * len(program.branch8)
    runs += [patches * ((1.0 - outlier_rate) if vdpc else 1.0)] * len(program.branch_low)
    runs += [1.0] * len(program.rest)
    return runs


def extract_tasks(program, outlier_rate: float = 0.0) -> list[Task]:
    """Tasks in order of first appearance in the program."""
    runs = call_runs(program, outlier_rate)
    tasks: dict[KernelSpec, Task] = {}
    best_runs: dict[KernelSpec, float] = {}
    for i, (c, r) in enumerate(zip(program.calls, runs)):
        spec = c.kernel.spec
        t = tasks.get(spec)
        if t is None:
            t = tasks[spec] = Task(task_key(spec, c.kernel.target), spec, c.kernel.target,
                                   c.params, c.windows[0])
            best_runs[spec] = -1.0
        t.calls.append(c.tag)
        t.call_ids.append(i)
        t.runs_per_inference += r
        if r > best_runs[spec]:        # time the call that dominates the task's cost
            best_runs[spec] = r
            t.params, t.window = c.params, c.windows[0]
    return list(tasks.values())


def estimate_outlier_rate(graph, policy, images: int = OUTLIER_IMAGES,
                          data_source=None) -> float:
    """Share of patches routed to the 8-bit branch on the first validation images."""
    if not policy.vdpc or policy.split_index is None:
        return 0.0
    val = data.source(data_source).split("val")
    x = quantize_input(val.images(tuple(graph.input_shape), 0, images)).astype(np.uint8)
    _, flags = Simulator(graph, policy).run(x)
    return float(flags.mean()) if flags.size else 0.0
