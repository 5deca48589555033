"""Write a generated model library to a directory (atomically) and describe it."""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .emit import emit_model_c
from .program import Program, build_program

RT_HEADER = Path(__file__).resolve().parent / "rt" / "qmcu_model_rt.h"
MARKER = "model.json"


@dataclass
class GeneratedModel:
    directory: Path
    program: Program
    meta: dict

    @property
    def hash(self) -> str:
        return self.meta["hash"]

    @property
    def sources(self) -> list[Path]:
        return sorted(self.directory.glob("*.c"))

    @property
    def arena_bytes(self) -> int:
        return self.program.arena_bytes


def _meta(prog: Program, digest: str, const_bytes: dict) -> dict:
    calls = []
    for i, c in enumerate(prog.calls):
        w, *_ = c.params.arrays()
        calls.append({"id": i, "layer": c.layer, "branch": c.branch, "op": c.kernel.spec.op,
                      "kernel": c.kernel.name, "spec": c.kernel.spec.describe(),
                      "macs_per_call": c.kernel.spec.macs, "scratch_bytes":
                      c.kernel.scratch_bytes, "weight_bytes": 0 if c.x2 else int(w.nbytes)})
    h, w_, ch = prog.input_shape
    return {
        "name": prog.name, "hash": digest, "model": prog.name, "policy": prog.policy_name,
        "input_bytes": h * w_ * ch, "input_shape_nhwc": [1, h, w_, ch],
        "output_bytes": prog.output_bytes, "arena_bytes": prog.arena_bytes,
        "predicted_peak_sram_bytes": prog.predicted_peak,
        "arena_vs_predicted": round(prog.arena_bytes / prog.predicted_peak, 4),
        "n_kernels": len(prog.calls), "kernel_instances": len(prog.kernels),
        "patches": len(prog.tiles), "grid": list(prog.plan.grid) if prog.plan else None,
        "split_layer": prog.plan.split_layer if prog.plan else None,
        "vdpc": None if prog.vdpc is None else {k: prog.vdpc[k] for k in
                                                 ("map", "hi", "lo")},
        "const_bytes": const_bytes,
        "buffers": [{"name": b.name, "offset": b.offset, "bytes": b.size,
                     "steps": [b.first, b.last]}
                    for b in sorted(prog.buffers.values(), key=lambda b: b.offset)],
        "calls": calls,
        "layers": prog.layers,
    }


def generate_module(mod, out_dir, name: str | None = None, target: str | None = None,
                    schedule: str = "dsp", knobs: dict | None = None,
                    kernel_lookup=None) -> GeneratedModel:
    """Generate the C library of a lowered Relax module (what LowerToQuantMCUKernels made:
    the kernels, widths, routing and patch loop it holds; a pass that changed a width before
    the lowering changes the firmware) into `out_dir` (created, or replaced if it holds an
    earlier generated model). target: None compiles the kernels for the target the module
    was lowered for (see :func:`build_program`). Nothing is written on failure."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"{out} exists and is not a generated model; choose an empty "
                              "or new directory")
    prog = build_program(mod, name, target, schedule, knobs, kernel_lookup)
    src, hdr, info = emit_model_c(prog)
    digest = info.pop("digest")
    symbols = info.pop("weight_symbols")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".qmcu-gen-", dir=out.parent))
    try:
        (tmp / "qmcu_model.c").write_text(src)
        (tmp / "qmcu_model.h").write_text(hdr)
        for k in prog.kernels:
            k.write(tmp)                # the kernel's C and the micro-kernel headers
        from micro_project.project_api import FIRMWARE_DIR   # the model API lives there
        for h in (RT_HEADER, FIRMWARE_DIR / "include" / "qmcu_model_api.h"):
            shutil.copyfile(h, tmp / h.name)
        meta = _meta(prog, digest, info)
        meta["weight_symbols"] = symbols
        (tmp / MARKER).write_text(json.dumps(meta, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return GeneratedModel(out, prog, meta)


def program_of_module(mod, name: str | None = None, target: str | None = None,
                      schedule: str = "dsp", knobs: dict | None = None) -> Program:
    """The kernel calls, arena and routing the C library of a lowered module holds (what
    :func:`generate_module` emits; the tuner extracts its tasks from it)."""
    return build_program(mod, name, target, schedule, knobs)
