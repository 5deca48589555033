"""Integer patch executor: runs a quantized graph patch by patch, then the rest layer by layer.

It reproduces :func:`tvm_quantmcu.quant.run_int` bit-exactly: each patch slices its input
window from the image, every layer computes its patch region with padding (the zero point)
only where the patch touches the image border, and the tiles are assembled into the stage
output. :func:`run_patch` runs ONE patch's branch and returns every intermediate feature map,
so a caller can stop after any layer, inspect the maps, and continue the branch with another
QGraph (the hook for per-patch runtime routing between an 8-bit and a low-bit branch).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..quant.reference import QGraph
from .analysis import Patch, PatchPlan
from .geometry import Box


def _crop(x: np.ndarray, box: Box, held: Box) -> np.ndarray:
    """The part `box` of a buffer (NHWC) that holds region `held` of its tensor."""
    r = box.relative_to(held)
    return x[:, r.h0:r.h1, r.w0:r.w1, :]


def input_window(plan: PatchPlan, patch: Patch, x_q: np.ndarray) -> np.ndarray:
    """The patch's input window cut from the NHWC stage input."""
    w = patch.window
    return x_q[:, w.h0:w.h1, w.w0:w.w1, :]


def run_patch(qg: QGraph, plan: PatchPlan, patch: Patch, window: np.ndarray,
              env: dict[str, np.ndarray] | None = None,
              upto: str | None = None) -> dict[str, np.ndarray]:
    """Run the branch of one patch on its input window (N×h×w×C, as cut by `input_window`).

    Returns a dict tensor name → that patch's region of the tensor (regions in
    ``patch.regions``). Layers whose output is already in `env` are not recomputed, and the
    run stops after layer `upto` — so a branch can start with one QGraph, be inspected, and
    be finished with another: ``env = run_patch(qg8, plan, p, win, upto=first);
    env = run_patch(qg_low, plan, p, win, env=env)``.
    """
    env = dict(env or {})
    env.setdefault(plan.graph.input, np.asarray(window, np.int32))
    for lp in patch.layers:
        l = plan.graph.layer(lp.layer)
        if l.output not in env:
            q = qg.qlayer(l.name)
            xs = [_crop(env[t], b, patch.regions[t]) for t, b in zip(l.inputs, lp.in_boxes)]
            env[l.output] = q.run(xs, padding=lp.padding)
        if lp.layer == upto:
            break
    return env


Router = Callable[[Patch, np.ndarray], dict[str, np.ndarray]]


def run_stage(qg: QGraph, plan: PatchPlan, x_q: np.ndarray,
              branch: Router | None = None) -> np.ndarray:
    """The assembled stage output (NHWC) of NHWC quantized input. `branch(patch, window)`
    may replace the default branch (``run_patch(qg, plan, patch, window)``); it must return
    the patch's tensors including the stage output tile."""
    x_q = np.asarray(x_q, np.int32)
    c, h, w = plan.graph.shapes[plan.stage_output]
    out = np.zeros((x_q.shape[0], h, w, c), np.int32)
    for p in plan.all_patches():
        win = input_window(plan, p, x_q)
        env = branch(p, win) if branch is not None else run_patch(qg, plan, p, win)
        t = p.tile
        out[:, t.h0:t.h1, t.w0:t.w1, :] = _crop(env[plan.stage_output], t,
                                                p.regions[plan.stage_output])
    return out


def run_rest(qg: QGraph, plan: PatchPlan, stage_out: np.ndarray, keep: bool = False):
    """The layers after the stage, layer by layer, from the assembled stage output."""
    env = {plan.stage_output: stage_out}
    for l in plan.rest_layers:
        env[l.output] = qg.qlayer(l.name).run([env[t] for t in l.inputs])
    if keep:
        return env
    out = env[plan.graph.output]
    return out.reshape(out.shape[0], -1)


def run_patch_int(qg: QGraph, plan: PatchPlan, x_q: np.ndarray,
                  branch: Router | None = None, keep: bool = False):
    """Patch-based integer inference; equals ``quant.run_int(qg, x_q)`` bit-exactly."""
    if qg.graph is not plan.graph and [l.name for l in qg.graph.layers] != \
            [l.name for l in plan.graph.layers]:
        raise ValueError("the QGraph and the patch plan describe different layer graphs")
    return run_rest(qg, plan, run_stage(qg, plan, x_q, branch), keep)
