"""Timing firmware: a model library (micro_project/firmware/include/qmcu_model_api.h) whose
kernel ids are kernels to time, each with the real parameters and window of a task's call and
seeded random input.

Every kernel is called through one table of function pointers, so the instructions counted
around ``qmcu_run_kernel`` are the same whether the library holds one kernel (a candidate) or
all of a model's (the baseline). After a run the output tile is in the model's output buffer;
the host compares it with the output of the default kernel (computed on the host).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..quant.packing import packed_bytes, packed_channels
from ..topi.registry import Kernel
from ..topi.runner import host_library, out_size, run_host
from .tasks import Task


@dataclass
class Entry:
    """One kernel to time: its inputs are fixed data of the library."""
    kernel: Kernel
    task: Task

    @property
    def out_bytes(self) -> int:
        return out_size(self.kernel)


def task_inputs(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """(x window bytes, bytes of the weight slot): seeded by the task, so every candidate of a
    task sees the same data. An add takes its second input in the weight slot."""
    rng = np.random.default_rng(int(task.key, 16) % (1 << 32))
    s = task.spec
    win = task.window
    x = rng.integers(0, 256, win.in_h * win.in_w * packed_channels(s.in_channels, s.in_bits),
                     dtype=np.uint8)
    if s.op == "add":
        h, w, c = s.in_shape
        w_slot = rng.integers(0, 256, packed_bytes((h, w, c), s.in2_bits),
                              dtype=np.uint8).view(np.int8)
    else:
        w_slot = task.params.w
    return x, w_slot


def expected_output(kernel: Kernel, task: Task) -> bytes:
    """Output of `kernel` on the task's data, run on the host (portable micro-kernels)."""
    x, w_slot = task_inputs(task)
    p = task.params
    params = type(p)(np.ascontiguousarray(w_slot), p.bias, p.mult, p.shift, p.qp)
    lib = host_library([kernel])
    win = task.window
    return run_host(lib, kernel, x, params, (win.in_h, win.in_w, win.pad_t, win.pad_l)).tobytes()


def _array(ctype: str, name: str, a) -> str:
    vals = [str(int(v)) for v in np.asarray(a).reshape(-1)] or ["0"]
    rows = ",\n  ".join(",".join(vals[i:i + 32]) for i in range(0, len(vals), 32))
    return f"static const {ctype} {name}[{len(vals)}] __attribute__((aligned(4))) = {{\n  {rows}\n}};\n"


_PROTO = ("(uint8_t *, int8_t *, int32_t *, int32_t *, int32_t *, int32_t *, uint8_t *, "
          "int32_t, int32_t, int32_t, int32_t)")


def model_source(entries: list[Entry], name: str) -> tuple[str, str, str]:
    """(qmcu_model.c, qmcu_model.h, hash) of a timing library."""
    data, rows = [], []
    for i, e in enumerate(entries):
        x, w_slot = task_inputs(e.task)
        p = e.task.params
        data += [_array("uint8_t", f"x{i}", x), _array("int8_t", f"w{i}", w_slot),
                 _array("int32_t", f"b{i}", p.bias), _array("int32_t", f"m{i}", p.mult),
                 _array("int32_t", f"n{i}", p.shift), _array("int32_t", f"q{i}", p.qp)]
        win = e.task.window
        rows.append(f"    {{{e.kernel.name}, x{i}, w{i}, b{i}, m{i}, n{i}, q{i}, "
                    f"{win.in_h}, {win.in_w}, {win.pad_t}, {win.pad_l}}},")
    protos = sorted({f"void {e.kernel.name}{_PROTO};" for e in entries})
    out_max = max(e.out_bytes for e in entries)
    body = "".join(data) + "\n".join(protos) + "\n" + "\n".join(rows)
    digest = hashlib.sha256(body.encode() + name.encode() + "".join(
        e.kernel.source for e in entries).encode()).hexdigest()[:16]
    src = f"""/* Timing library for kernel tuning: {len(entries)} kernel(s). */
#include <stdint.h>
#include "qmcu_model.h"

typedef void (*qmcu_kernel_fn){_PROTO};
{chr(10).join(protos)}

{"".join(data)}
typedef struct {{
    qmcu_kernel_fn fn;
    const uint8_t *x;
    const int8_t *w;
    const int32_t *bias, *mult, *shift, *qp;
    int32_t in_h, in_w, pad_t, pad_l;
}} qmcu_timing_entry_t;

static const qmcu_timing_entry_t entries[{len(entries)}] = {{
{chr(10).join(rows)}
}};

static uint8_t out[{out_max}] __attribute__((aligned(8)));
static uint8_t in[4];

static const qmcu_model_desc_t desc = {{
    QMCU_MODEL_API_VERSION, "{name}", QMCU_MODEL_HASH, in, out, sizeof in, sizeof out,
    sizeof out, {len(entries)}u,
}};

const qmcu_model_desc_t *qmcu_model_describe(void) {{ return &desc; }}

int qmcu_run_kernel(uint32_t kernel_id, const uint8_t *input, uint8_t *output) {{
    (void)input;
    (void)output;
    if (kernel_id >= {len(entries)}u) return QMCU_KERNEL_UNKNOWN;
    const qmcu_timing_entry_t *e = &entries[kernel_id];
    e->fn((uint8_t *)e->x, (int8_t *)e->w, (int32_t *)e->bias, (int32_t *)e->mult,
          (int32_t *)e->shift, (int32_t *)e->qp, out, e->in_h, e->in_w, e->pad_t, e->pad_l);
    return 0;
}}

int qmcu_run(const uint8_t *input, uint8_t *output) {{
    for (uint32_t k = 0; k < {len(entries)}u; k++) qmcu_run_kernel(k, input, output);
    return 0;
}}
"""
    hdr = f"""#ifndef QMCU_MODEL_H
#define QMCU_MODEL_H
#include "qmcu_model_api.h"
#define QMCU_MODEL_HASH "{digest}"
#endif
"""
    return src, hdr, digest


def write_timing_model(entries: list[Entry], directory, name: str = "qmcu-tune") -> dict:
    """Write the library (C, kernels, headers, model.json) into `directory`; returns model.json."""
    from micro_project.project_api import FIRMWARE_DIR
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    src, hdr, digest = model_source(entries, name)
    (d / "qmcu_model.c").write_text(src)
    (d / "qmcu_model.h").write_text(hdr)
    for k in {e.kernel.name: e.kernel for e in entries}.values():
        k.write(d)
    shutil.copyfile(FIRMWARE_DIR / "include" / "qmcu_model_api.h", d / "qmcu_model_api.h")
    meta = {"name": name, "hash": digest, "n_kernels": len(entries),
            "kernels": [e.kernel.name for e in entries],
            "output_bytes": [e.out_bytes for e in entries]}
    (d / "model.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta
