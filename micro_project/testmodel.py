"""A small model library in C for exercising projects end to end, generated from a tiny
quantized graph of dense layers (the integer semantics of tvm_quantmcu.quant.reference).

It implements firmware/include/qmcu_model_api.h like the real code generator will, so any
template can build, flash and run it, and the host can check every answer against
``TestModel.reference`` bit for bit."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvm_quantmcu.graph import Graph, Layer, run_float
from tvm_quantmcu.quant import QGraph, quantize_graph, run_int


def tiny_graph(input_shape=(3, 16, 16), hidden: int = 32, classes: int = 10,
               seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    c, h, w = input_shape
    n_in = c * h * w
    fc1 = Layer("fc1", "dense", ["x"], "h", weight=rng.normal(0, 1 / np.sqrt(n_in),
                (hidden, n_in)).astype(np.float32),
                bias=rng.normal(0, 0.1, hidden).astype(np.float32), act="relu")
    fc2 = Layer("fc2", "dense", ["h"], "y", weight=rng.normal(0, 1 / np.sqrt(hidden),
                (classes, hidden)).astype(np.float32),
                bias=rng.normal(0, 0.1, classes).astype(np.float32))
    return Graph("x", tuple(input_shape), [fc1, fc2], "y")


def quantize_tiny(graph: Graph, seed: int = 1) -> QGraph:
    """8-bit quantization with ranges observed on random images."""
    x = np.random.default_rng(seed).random((64, *graph.input_shape), dtype=np.float32)
    env = run_float(graph, x, keep=True)
    ranges = {t: (float(v.min()), float(v.max())) for t, v in env.items() if t != graph.input}
    return quantize_graph(graph, ranges, 8)


def _c_array(ctype: str, name: str, values) -> str:
    vals = [int(v) for v in np.asarray(values).reshape(-1)]
    rows = [", ".join(str(v) for v in vals[i:i + 16]) for i in range(0, len(vals), 16)]
    return f"static const {ctype} {name}[{len(vals)}] = {{\n    " + ",\n    ".join(rows) + "\n};\n"


_DENSE = """
/* y = clamp(floor(((x - zx)·w + b)·M + 2^(n-1)) >> n) + zo, lo, hi) per output channel */
static void dense_u8(const uint8_t *x, int32_t zx, uint32_t n_in, uint32_t n_out,
                     const int8_t *w, const int32_t *b, const int32_t *mult, const uint8_t *shift,
                     int32_t zo, int32_t lo, int32_t hi, uint8_t *y) {
    for (uint32_t o = 0; o < n_out; o++) {
        int64_t acc = b[o];
        const int8_t *row = w + (size_t)o * n_in;
        for (uint32_t i = 0; i < n_in; i++) acc += (int32_t)(x[i] - zx) * row[i];
        int64_t v = (acc * mult[o] + ((int64_t)1 << (shift[o] - 1))) >> shift[o];
        v += zo;
        y[o] = (uint8_t)(v < lo ? lo : v > hi ? hi : v);
    }
}
"""


@dataclass
class TestModel:
    qgraph: QGraph
    directory: Path
    name: str
    hash: str
    input_bytes: int
    output_bytes: int
    arena_bytes: int

    def reference(self, data: bytes) -> bytes:
        """Expected output bytes for input bytes (NHWC uint8) from the numpy golden model."""
        c, h, w = self.qgraph.graph.input_shape
        x = np.frombuffer(bytes(data), np.uint8).reshape(1, h, w, c)
        return run_int(self.qgraph, x).astype(np.uint8).tobytes()


def write_test_model(directory, name: str = "tiny-dense", input_shape=(3, 16, 16),
                     hidden: int = 32, classes: int = 10, seed: int = 0, hang: bool = False,
                     fail_magic: bool = False) -> TestModel:
    """Write qmcu_model.h/.c and model.json into `directory`.

    hang: qmcu_run never returns (for hang detection tests). fail_magic: qmcu_run returns -7
    when the input starts with the bytes "FAIL" (for device error tests)."""
    qg = quantize_tiny(tiny_graph(input_shape, hidden, classes, seed), seed + 1)
    layers = qg.layers
    sizes = [int(np.prod(qg.graph.shapes[l.layer.output])) for l in layers]
    n_in = int(np.prod(input_shape))
    # arena: input | every layer output (the last one is the model output)
    offsets, pos = [], n_in
    for s in sizes:
        offsets.append(pos)
        pos += s
    arena = pos
    body = []
    for k, q in enumerate(layers):
        if np.any(q.n < 1) or np.any(q.n > 62) or np.any(np.abs(q.M) >= 2 ** 31):
            raise ValueError(f"{q.layer.name}: multiplier outside the int32/shift range")
        body += [_c_array("int8_t", f"w{k}", q.w), _c_array("int32_t", f"b{k}", q.bias),
                 _c_array("int32_t", f"m{k}", q.M), _c_array("uint8_t", f"n{k}", q.n)]
    params = "".join(body)
    tag = json.dumps({"name": name, "hang": hang, "fail": fail_magic}).encode()
    digest = hashlib.sha256(params.encode() + tag).hexdigest()[:16]

    calls = []
    for k, q in enumerate(layers):
        src = "input" if k == 0 else f"arena + {offsets[k - 1]}u"
        n_src = n_in if k == 0 else sizes[k - 1]
        lo, hi = q.clamp
        calls.append(f"        case {k}: dense_u8({src}, {q.in_q[0].zero_point}, {n_src}u, "
                     f"{sizes[k]}u, w{k}, b{k}, m{k}, n{k}, {q.out_q.zero_point}, {lo}, {hi}, "
                     f"arena + {offsets[k]}u); break;")
    out_off = offsets[-1]
    hang_c = "    for (;;) { spin++; }   /* test model: never returns */\n" if hang else ""
    fail_c = ("    if (input[0] == 'F' && input[1] == 'A' && input[2] == 'I' && input[3] == 'L')"
              " return -7;\n") if fail_magic else ""
    source = f"""/* Generated by micro_project.testmodel: {name}, {len(layers)} dense layers. */
#include <stddef.h>
#include <string.h>

#include "qmcu_model.h"

{params}{_DENSE}
static uint8_t arena[{arena}] __attribute__((aligned(8)));
static volatile uint32_t spin;

static const qmcu_model_desc_t desc = {{
    QMCU_MODEL_API_VERSION, "{name}", "{digest}",
    arena, arena + {out_off}u, {n_in}u, {sizes[-1]}u, {arena}u, {len(layers)}u,
}};

const qmcu_model_desc_t *qmcu_model_describe(void) {{ return &desc; }}

static int layer(uint32_t k, const uint8_t *input) {{
    switch (k) {{
{chr(10).join(calls)}
        default: return QMCU_KERNEL_UNKNOWN;
    }}
    return 0;
}}

int qmcu_run(const uint8_t *input, uint8_t *output) {{
{hang_c}{fail_c}    for (uint32_t k = 0; k < {len(layers)}u; k++) layer(k, input);
    if (output != arena + {out_off}u) memcpy(output, arena + {out_off}u, {sizes[-1]}u);
    return 0;
}}

/* Kernel k runs layer k alone on the tensors left by the previous run (tuning hook). */
int qmcu_run_kernel(uint32_t kernel_id, const uint8_t *input, uint8_t *output) {{
    (void)output;
    return layer(kernel_id, input);
}}
"""
    header = f"""/* Generated by micro_project.testmodel: {name}. */
#ifndef QMCU_MODEL_H
#define QMCU_MODEL_H
#include "qmcu_model_api.h"
#define QMCU_MODEL_HASH "{digest}"
#define QMCU_MODEL_INPUT_BYTES {n_in}u
#define QMCU_MODEL_OUTPUT_BYTES {sizes[-1]}u
#define QMCU_MODEL_ARENA_BYTES {arena}u
#endif
"""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "qmcu_model.c").write_text(source)
    (d / "qmcu_model.h").write_text(header)
    meta = {"name": name, "hash": digest, "input_bytes": n_in, "output_bytes": sizes[-1],
            "arena_bytes": arena, "n_kernels": len(layers)}
    (d / "model.json").write_text(json.dumps(meta, indent=1) + "\n")
    return TestModel(qg, d, name, digest, n_in, sizes[-1], arena)
