"""Small tuning tasks for tests: a kernel spec with random weights and real-looking
quantization parameters, timed on its full window."""
import numpy as np

from tvm_quantmcu.codegen.layout import Call
from tvm_quantmcu.topi import KernelSpec
from tvm_quantmcu.topi.params import prepare
from tvm_quantmcu.tune.space import task_key
from tvm_quantmcu.tune.tasks import Task

SMALL_DW = KernelSpec("depthwise", (10, 10, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1))


def small_task(spec: KernelSpec = SMALL_DW, target: str = "cortex-m4", seed: int = 0,
               runs: float = 1.0, tag: str = "dw") -> Task:
    rng = np.random.default_rng(seed)
    oc, (h, w, c) = spec.out_channels, spec.in_shape
    shape = (oc, 1) + spec.kernel if spec.op == "depthwise" else (oc, c) + spec.kernel
    params = prepare(spec, w=rng.integers(-40, 40, shape), bias=rng.integers(-500, 500, oc),
                     M=rng.integers(1 << 30, (1 << 31) - 1, oc), n=np.full(oc, 38),
                     zp_in=7, zp_out=3, lo=0, hi=255)
    t = Task(task_key(spec, target), spec, target, params,
             Call(h, w, spec.padding[0], spec.padding[1]))
    t.calls.append(tag)
    t.call_ids.append(0)
    t.runs_per_inference = runs
    return t
