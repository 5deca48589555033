"""Where a policy's images run when it is evaluated.

``sim``: the numpy integer simulator (:class:`Simulator`). ``c``: the policy's generated C
library, built for the host and called through ctypes — bit-exact with the simulator (outputs
and routing; tests/codegen check it) and several times faster, so full-test-set benchmarks
use it. Both engines are scored by the same :func:`evaluate`; BitOPs always come from the
simulator's per-patch tables applied to the routing the engine returned.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from .simulate import Simulator

ENGINES = ("sim", "c")


def fastest_engine() -> str:
    """``c`` when a host C compiler is on PATH (same results, faster), else ``sim``."""
    return "c" if shutil.which("gcc") else "sim"


class CompiledPolicy:
    """A policy's generated C, loaded in this process, with the simulator's BitOPs tables.

    Has the interface :func:`evaluate` uses: ``run``, ``stage_bitops``, ``bitops_rest``,
    ``plan``."""

    def __init__(self, sim: Simulator, opt: str = "-O2"):
        from ..codegen import generate_module
        from ..codegen.host import HostModel
        from ..relax_build import lower
        self.sim = sim
        self.plan = sim.plan
        work = Path(tempfile.mkdtemp(prefix="qmcu-eval-"))
        try:
            mod = lower(sim.graph, sim.policy, sim.plan)
            self.host = HostModel(generate_module(mod, work / "model", sim.policy.model), opt)
        finally:
            # the loaded library stays mapped after its file is removed
            shutil.rmtree(work, ignore_errors=True)

    @property
    def bitops_rest(self) -> int:
        return self.sim.bitops_rest

    def stage_bitops(self, outlier: np.ndarray) -> np.ndarray:
        return self.sim.stage_bitops(outlier)

    def run(self, x_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(output values N×classes, routing N×patches), as :meth:`Simulator.run`."""
        # the device receives uint8 pixels; the input quantizer's values are 0..255
        return self.host.run(np.asarray(x_q, np.uint8))


def runner(sim: Simulator, engine: str):
    """The object :func:`evaluate` runs the images through, for engine ``sim`` or ``c``."""
    if engine == "sim":
        return sim
    if engine == "c":
        return CompiledPolicy(sim)
    raise ValueError(f"unknown evaluation engine {engine!r}; one of {', '.join(ENGINES)}")
