"""The design space of one kernel: the schedule knobs of ``topi.schedules`` as meta_schedule
decisions.

A task's workload is the kernel's unscheduled compute (``topi.compute``) with its window
arguments fixed to the spec's own window (meta_schedule needs static buffer shapes) and the
spec, the target and a digest of the kernel generator recorded as function attributes, so the
workload of a (spec, target) pair is always the same module for the same kernel code: that is
how a tuning record is found again at compile time, and why records of older kernel code are
not.

Each knob is one ``sample_categorical`` whose value (an index into :data:`KNOB_CHOICES`) is
written as an annotation of the root block. The knobs steer Python-level control flow in
``schedules.schedule`` (``compute_at`` here or there), which a meta_schedule trace cannot
replay with other decisions; so the trace holds only the decisions, and the builder and the
feature extractor turn them into the real schedule through ``topi.registry.get_kernel``.

Only knob values that change the generated C for this spec are offered (e.g. ``xpad_at`` is
moot for a 1×1 convolution, ``pixels`` for an odd tile width): each value is tried alone
against the defaults, so the search spends no trial on a duplicate binary; knobs that another
knob's value makes moot (``schedules.moot_knobs``, e.g. ``xpad_at`` under ``pixels="row"``)
stay at their defaults in those points (:func:`canonical`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import tvm
from tvm import s_tir, tirx

from ..topi import registry, schedules
from ..topi.compute import KernelSpec, make_compute

SCHEDULE = "dsp"          # the schedule whose knobs are tuned (the codegen's default)
ANNOTATION = "qmcu.knob."

# Values worth trying per knob. schedules.py may publish its own KNOB_CHOICES; a knob without
# choices anywhere is kept at its default.
_OWN_CHOICES = {"xpad_at": ("row", "pixel"), "unroll_pixels": (1, 2, 4), "pixels": (1, 2, "row"),
                "loop_pragma": (True, False), "requant_at": ("end", "pair"),
                "lw_pairs": (2, 1)}


@functools.lru_cache(maxsize=1)
def default_knobs() -> dict:
    """Every knob get_kernel applies to the tuned schedule when given none, at its default:
    schedules.DEFAULT_KNOBS plus those the registry adds (e.g. its compiler-pragma switch)."""
    probe = KernelSpec("conv2d", (1, 1, 4), 4)
    try:
        effective = dict(registry.get_kernel(probe, SCHEDULE, "host").knobs)
    except Exception:  # noqa: BLE001 — fall back to what the schedules declare
        effective = {}
    return {**schedules.DEFAULT_KNOBS, **effective}


def knob_choices() -> dict[str, tuple]:
    published = getattr(schedules, "KNOB_CHOICES", None) or {}
    out = {}
    for name, default in default_knobs().items():
        values = tuple(published.get(name, _OWN_CHOICES.get(name, (default,))))
        out[name] = values if default in values else (default, *values)
    return out


def choices_signature() -> str:
    """Changes when the knobs, their defaults or their values change (cached spaces expire)."""
    blob = json.dumps([default_knobs(), knob_choices()], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


# ---- the workload

def spec_to_json(spec: KernelSpec) -> str:
    return json.dumps(dataclasses.asdict(spec), sort_keys=True)


def spec_from_json(text: str) -> KernelSpec:
    d = json.loads(text)
    return KernelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@functools.lru_cache(maxsize=1)
def kernels_version() -> str:
    """Digest of the kernel generator (topi sources and micro-kernel headers). It is part of
    every workload: a database measured with other kernel code is not applied to this one."""
    root = Path(registry.__file__).resolve().parent
    h = hashlib.sha1()
    for p in sorted([*root.glob("*.py"), *root.glob("ukernels/*")]):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:12]


def task_key(spec: KernelSpec, target: str) -> str:
    blob = f"{spec_to_json(spec)}|{target}|{kernels_version()}"
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def workload(spec: KernelSpec, target: str) -> tvm.IRModule:
    """The tuning workload of `spec` on `target` (deterministic: the database key)."""
    func = make_compute(spec).prim_func()
    by_name = {p.name: p for p in func.params}
    h, w, _ = spec.in_shape
    window = {"in_h": h, "in_w": w, "pad_t": spec.padding[0], "pad_l": spec.padding[1]}
    func = func.specialize({by_name[n]: tirx.IntImm("int32", v) for n, v in window.items()
                            if n in by_name})
    func = func.with_attr({"global_symbol": "main", "qmcu.spec": spec_to_json(spec),
                           "qmcu.target": target, "qmcu.kernels": kernels_version(),
                           "qmcu.task": task_key(spec, target)})
    return tvm.IRModule({"main": func})


def spec_of(mod: tvm.IRModule) -> tuple[KernelSpec, str]:
    f = mod["main"]
    return spec_from_json(str(f.attrs["qmcu.spec"])), str(f.attrs["qmcu.target"])


def task_key_of(mod: tvm.IRModule) -> str:
    return str(mod["main"].attrs["qmcu.task"])


# ---- the space

@dataclass
class KnobSpace:
    """Per knob, the indices (into knob_choices()) worth trying for one spec."""
    candidates: dict[str, list[int]]

    @property
    def size(self) -> int:
        n = 1
        for c in self.candidates.values():
            n *= len(c)
        return n

    def to_json(self) -> dict:
        return {"candidates": self.candidates, "signature": choices_signature()}

    @classmethod
    def from_json(cls, d: dict) -> "KnobSpace | None":
        if d.get("signature") != choices_signature():
            return None
        return cls({k: list(v) for k, v in d["candidates"].items()})


def default_indices() -> dict[str, int]:
    ch = knob_choices()
    return {k: ch[k].index(v) for k, v in default_knobs().items()}


def indices_from_knobs(knobs: dict) -> dict[str, int]:
    ch = knob_choices()
    return {k: ch[k].index(v) for k, v in knobs.items() if k in ch and v in ch[k]}


def knobs_from_indices(indices: dict[str, int]) -> dict:
    ch = knob_choices()
    knobs = dict(default_knobs())
    for k, i in indices.items():
        if k in ch and 0 <= i < len(ch[k]):
            knobs[k] = ch[k][i]
    return knobs


def canonical(indices: dict[str, int]) -> dict[str, int]:
    """The point with every knob that the others make moot at its default."""
    moot = schedules.moot_knobs(knobs_from_indices(indices))
    base = default_indices()
    return {k: (base[k] if k in moot and k in base else v) for k, v in indices.items()}


def _normalized_source(spec: KernelSpec, target: str, knobs: dict, kernel_factory) -> str | None:
    try:
        k = kernel_factory(spec, SCHEDULE, target, knobs)
    except Exception:       # noqa: BLE001 — a value that fails to build stays in the space
        return None         # (its trial is then recorded as failed)
    return k.source.replace(k.name, "KERNEL")


def probe_space(spec: KernelSpec, target: str, kernel_factory=registry.get_kernel) -> KnobSpace:
    """Try each knob value alone against the defaults; keep the values whose C differs."""
    ch = knob_choices()
    base_idx = default_indices()
    defaults = default_knobs()
    base = _normalized_source(spec, target, dict(defaults), kernel_factory)
    cands = {}
    for name, values in ch.items():
        keep = [base_idx[name]]
        for i, v in enumerate(values):
            if i == base_idx[name]:
                continue
            src = _normalized_source(spec, target, {**defaults, name: v}, kernel_factory)
            if src is None or src != base:
                keep.append(i)
        cands[name] = keep
    return KnobSpace(cands)


def apply_space(sch: s_tir.Schedule, space: KnobSpace,
                decisions: dict[str, int] | None = None) -> s_tir.Schedule:
    """Sample (or, with `decisions`, fix) every knob and annotate the root block with it."""
    root = sch.get_sblock("root")
    for name, cands in space.candidates.items():
        if len(cands) == 1:
            sch.annotate(root, ANNOTATION + name, cands[0])
            continue
        fixed = None if decisions is None else cands.index(decisions[name])
        v = sch.sample_categorical(cands, [1.0 / len(cands)] * len(cands), decision=fixed)
        sch.annotate(root, ANNOTATION + name, v)
    return sch


def schedule_fn(space: KnobSpace):
    """The ScheduleFn design space of one task."""
    from tvm.s_tir.meta_schedule.space_generator import ScheduleFn
    return ScheduleFn(lambda sch: apply_space(sch, space), sch_rules=[], postprocs=[],
                      mutator_probs={})


def indices_from_mod(mod: tvm.IRModule) -> dict[str, int]:
    ann = mod["main"].body.block.annotations
    return {k[len(ANNOTATION):]: int(v) for k, v in ann.items() if k.startswith(ANNOTATION)}


def knobs_from_mod(mod: tvm.IRModule) -> dict:
    return knobs_from_indices(indices_from_mod(mod))


def default_schedule(mod: tvm.IRModule, space: KnobSpace) -> s_tir.Schedule:
    """A traced schedule of the workload with every knob at its default."""
    return apply_space(s_tir.Schedule(mod), space, default_indices())


def knobs_from_trace(mod: tvm.IRModule, trace) -> dict:
    sch = s_tir.Schedule(mod)
    trace.apply_to_schedule(sch, remove_postproc=False)
    return knobs_from_mod(sch.mod)
