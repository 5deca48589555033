"""Print a :class:`~.program.Program` as a self-contained C library for bare metal.

Output: ``qmcu_model.c`` (constants in flash, the static arena, ``qmcu_run``), ``qmcu_model.h``,
one C file per kernel plus the micro-kernel header, the support header and the model API header.
Per-patch differences are data (window tables), not code: the patch loop calls the same kernel
instance for every patch.
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..quant.packing import packed_channels
from ..topi.params import CONST_ALIGN, ConstantPool
from .program import KernelCall, Program

WEIGHTS_SECTION = ".rodata.qmcu_weights"
TABLES_SECTION = ".rodata.qmcu_tables"
_CTYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t",
           np.dtype(np.uint8): "uint8_t", np.dtype(np.int16): "int16_t"}


def _values(a: np.ndarray) -> str:
    vals = [str(int(v)) for v in np.asarray(a).reshape(-1)]
    return ",\n  ".join(",".join(vals[i:i + 24]) for i in range(0, len(vals), 24))


class _Constants(ConstantPool):
    """The pool of const arrays (:class:`~..topi.params.ConstantPool`), printed as C."""

    def c_source(self) -> str:
        sec = {"weights": WEIGHTS_SECTION, "tables": TABLES_SECTION}
        return "".join(f"static const {_CTYPES[a.dtype]} {name}[{a.size}] "
                       f"__attribute__((section(\"{sec[kind]}\"), aligned({CONST_ALIGN}))) = "
                       f"{{\n  {_values(a)}\n}};\n" for name, kind, a in self.entries)

    @property
    def bytes_by_kind(self) -> dict:
        return {"weights": self.bytes("weights"), "tables": self.bytes("tables")}


def _arena(prog: Program, buf: str) -> str:
    return f"A({prog.buffers[buf].offset})"


def _call(prog: Program, consts: _Constants, c: KernelCall, patch: str | None) -> str:
    """The C statement of one kernel call; `patch` is the patch index expression in the
    stage (window tables), None for whole tensors."""
    names = consts.add_params(c.tag, c.params)
    if prog.plan is None and c.x == prog.input_tensor:
        x = "(uint8_t *)input"
    else:
        x = _arena(prog, c.x)
    if c.x2 is not None:
        names[0] = _arena(prog, c.x2)
    if patch is None:
        win = c.windows[0]
        args = f"{win.in_h}, {win.in_w}, {win.pad_t}, {win.pad_l}"
    else:
        tab = consts.add(f"win_{c.tag}", np.array([[v.in_h, v.in_w, v.pad_t, v.pad_l]
                                                   for v in c.windows], np.int16), "tables")
        args = ", ".join(f"{tab}[4 * {patch} + {i}]" for i in range(4))
        if c.x_offsets and any(c.x_offsets):
            offs = consts.add(f"xoff_{c.tag}", np.array(c.x_offsets, np.int32), "tables")
            x = f"{x} + {offs}[{patch}]"
    ptrs = [f"(int8_t *){names[0]}"] + [f"(int32_t *){n}" for n in names[1:]]
    return f"{c.kernel.name}({x}, {', '.join(ptrs)}, {_arena(prog, c.y)}, {args});"


def emit_model_c(prog: Program) -> tuple[str, str, dict]:
    """(qmcu_model.c, qmcu_model.h, flash bytes of the constants by kind and the names of
    the weights section's constants)."""
    consts = _Constants()
    body: list[str] = []
    ind = "        "
    np_ = len(prog.tiles) if prog.plan is not None else 0
    if prog.plan is not None:
        lay = prog.layout
        ih, iw = lay.sizes[prog.input_tensor]
        h_img, w_img, c_img = prog.input_shape
        origin = consts.add("patch_window", np.array(prog.windows, np.int16), "tables")
        body.append(f"    for (int32_t p = 0; p < {np_}; ++p) {{")
        body.append(f"{ind}qmcu_copy_box_out({_arena(prog, prog.input_tensor)}, input, {w_img}, "
                    f"{origin}[2 * p], {origin}[2 * p + 1], {ih}, {iw}, {c_img});")
        body += [ind + _call(prog, consts, c, "p") for c in prog.head]
        if prog.vdpc is not None:
            v = prog.vdpc
            box = consts.add("vdpc_box", np.array(v["boxes"], np.int16), "tables")
            body.append(f"{ind}const int outlier = qmcu_vdpc_outlier({_arena(prog, v['map'])}, "
                        f"{v['map_w']}, {v['channels']}, {box}[4 * p], {box}[4 * p + 1], "
                        f"{box}[4 * p + 2], {box}[4 * p + 3], {v['hi']}, {v['lo']});")
            body.append(f"{ind}qmcu_routing[p] = (uint8_t)outlier;")
            body.append(f"{ind}if (outlier) {{")
            body += [ind + "    " + _call(prog, consts, c, "p") for c in prog.branch8]
            body.append(f"{ind}}} else {{")
            for r in prog.requants:
                body.append(f"{ind}    qmcu_requant_map({_arena(prog, r.buffer)}, {r.pixels}, "
                            f"{r.channels}, {r.zp_src}, {r.mult}, {r.shift}, {r.zp_dst}, "
                            f"{r.bits});")
            body += [ind + "    " + _call(prog, consts, c, "p") for c in prog.branch_low]
            body.append(f"{ind}}}")
        else:
            body += [ind + _call(prog, consts, c, "p") for c in prog.branch_low]
            body.append(f"{ind}qmcu_routing[p] = 0;")
        so = prog.plan.stage_output
        px = packed_channels(prog.plan.output_hwc[2], prog.plan.output_bits)
        tile = consts.add("patch_tile", np.array([t["src"] + t["dst"] + t["hw"]
                                                  for t in prog.tiles], np.int16), "tables")
        sw, rw = prog.plan.output_hwc[1], lay.sizes[so][1]
        body.append(f"{ind}qmcu_copy_box({_arena(prog, so)}, {sw}, {tile}[6 * p + 2], "
                    f"{tile}[6 * p + 3], {_arena(prog, 'region_' + so)}, {rw}, {tile}[6 * p], "
                    f"{tile}[6 * p + 1], {tile}[6 * p + 4], {tile}[6 * p + 5], {px});")
        body.append("    }")
    body += ["    " + _call(prog, consts, c, None) for c in prog.rest]
    body.append(f"    memcpy(output, {_arena(prog, prog.output_tensor)}, {prog.output_bytes}u);")

    protos = sorted({f"void {k.name}(uint8_t *, int8_t *, int32_t *, int32_t *, int32_t *, "
                     f"int32_t *, uint8_t *, int32_t, int32_t, int32_t, int32_t);"
                     for k in prog.kernels})
    kernel_cases = []
    rest_ids = {id(c) for c in prog.rest}
    for i, c in enumerate(prog.calls):
        stage = id(c) not in rest_ids
        kernel_cases.append(f"    case {i}: {_call(prog, consts, c, '0' if stage else None)} "
                            f"break;  /* {c.tag} */")
    h_in, w_in, c_in = prog.input_shape
    in_bytes = h_in * w_in * c_in
    const_c = consts.c_source()
    digest = hashlib.sha256(const_c.encode() + "\n".join(body).encode()
                            + prog.name.encode()).hexdigest()[:16]
    routing = max(np_, 1)
    src = f"""/* Generated by tvm_quantmcu.codegen: model {prog.name}, policy {prog.policy_name}.
 * Weights and tables are const (flash); all activations live in one static arena. */
#include <stdint.h>
#include <string.h>

#include "qmcu_model.h"
#include "qmcu_model_rt.h"

{chr(10).join(protos)}

#define A(off) (qmcu_arena + (off))

static uint8_t qmcu_arena[QMCU_MODEL_ARENA_BYTES] __attribute__((aligned(8)));
static uint8_t qmcu_input_buf[QMCU_MODEL_INPUT_BYTES] __attribute__((aligned(4)));
static uint8_t qmcu_output_buf[QMCU_MODEL_OUTPUT_BYTES] __attribute__((aligned(4)));
uint8_t qmcu_routing[{routing}];

{const_c}
static const qmcu_model_desc_t qmcu_desc = {{
    QMCU_MODEL_API_VERSION, "{prog.name}", QMCU_MODEL_HASH, qmcu_input_buf, qmcu_output_buf,
    QMCU_MODEL_INPUT_BYTES, QMCU_MODEL_OUTPUT_BYTES, QMCU_MODEL_ARENA_BYTES,
    QMCU_MODEL_KERNELS,
}};

const qmcu_model_desc_t *qmcu_model_describe(void) {{ return &qmcu_desc; }}

int qmcu_run(const uint8_t *input, uint8_t *output) {{
{chr(10).join(body)}
    return 0;
}}

/* Kernel k runs one call of the network alone (patch 0's window in the patch stage) on
 * whatever the arena holds: a timing hook for tuning. */
int qmcu_run_kernel(uint32_t kernel_id, const uint8_t *input, uint8_t *output) {{
    (void)input;
    (void)output;
    switch (kernel_id) {{
{chr(10).join(kernel_cases)}
    default: return QMCU_KERNEL_UNKNOWN;
    }}
    return 0;
}}
"""
    hdr = f"""/* Generated by tvm_quantmcu.codegen: model {prog.name}, policy {prog.policy_name}. */
#ifndef QMCU_MODEL_H
#define QMCU_MODEL_H
#include <stdint.h>
#include "qmcu_model_api.h"

#define QMCU_MODEL_HASH "{digest}"
#define QMCU_MODEL_INPUT_BYTES {in_bytes}u   /* {h_in}x{w_in}x{c_in} uint8, NHWC */
#define QMCU_MODEL_OUTPUT_BYTES {prog.output_bytes}u
#define QMCU_MODEL_ARENA_BYTES {prog.arena_bytes}u
#define QMCU_MODEL_KERNELS {len(prog.calls)}u
#define QMCU_MODEL_PATCHES {np_}u

/* Routing of the last run: 1 where patch p took the all-8-bit (outlier) branch. */
extern uint8_t qmcu_routing[];
#endif
"""
    return src, hdr, {"digest": digest, **consts.bytes_by_kind,
                      "weight_symbols": consts.names("weights")}
