"""Lower a scheduled PrimFunc to plain C with a pointer signature.

TVM's default pipeline ends in ``MakePackedAPI`` (the tvm-ffi packed calling convention); a
kernel library for bare metal wants ``void f(const uint8_t* x, ...)`` instead. The pipeline
registered here (on first use) is the s_tir default lowering without ``AnnotateEntryFunc``, ``SplitHostDevice``
and ``MakePackedAPI``; buffer parameters are turned into pointer parameters before lowering.
"""
from __future__ import annotations

import re

import tvm
from tvm import s_tir, tirx
from tvm.target import Target
from tvm.tirx import compilation_pipeline

PIPELINE = "qmcu_plain_c"
C_TARGET = {"kind": "c"}


def _pipeline():
    @tvm.transform.module_pass(opt_level=0)
    def _lower(mod, _ctx):
        passes = [
            s_tir.transform.CanonicalizeLoop(),
            s_tir.transform.LowerInitBlock(),
            s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
            s_tir.transform.ConvertBlocksToOpaque(),
            s_tir.transform.CompactBufferAllocation(),
            s_tir.transform.LowerMatchBuffer(),
            s_tir.transform.StmtSimplify(),
            s_tir.transform.LowerOpaqueBlock(),
            tirx.transform.FlattenBuffer(),
            tirx.transform.NarrowDataType(32),
            s_tir.transform.LoopPartition(),
            tirx.transform.VectorizeLoop(False),
            tirx.transform.StorageRewrite(),
            tirx.transform.UnrollLoop(),
            s_tir.transform.RenormalizeSplitPattern(),
            tirx.transform.StmtSimplify(),
            tirx.transform.RemoveNoOp(),
            s_tir.transform.RewriteUnsafeSelect(),
            tirx.transform.CommonSubexprElim(),
            tirx.transform.VerifyMemory(),
        ]
        return tvm.ir.transform.Sequential(passes)(mod)

    def _host():
        return tvm.ir.transform.Sequential([tirx.transform.LowerIntrin()])

    def _device():
        return tvm.ir.transform.Sequential([tirx.transform.LowerIntrin()])

    return _lower, _host, _device


def _ensure_pipeline() -> None:
    """Register the pipeline with TVM on first use (importing the package registers nothing)."""
    if PIPELINE not in compilation_pipeline.PIPELINE_MAP:
        compilation_pipeline.register_tir_pipeline(PIPELINE, _pipeline)


def pointer_signature(func: tirx.PrimFunc, name: str) -> tirx.PrimFunc:
    """Make every buffer parameter a pointer parameter, declaring the buffer over it at the
    top of the body (what MakePackedAPI would otherwise do with a packed argument array)."""
    params, decls = [], []
    for p in func.params:
        if tirx.buffer.is_buffer_var(p):
            ptr = tirx.Var(p.name, tirx.buffer.buffer_data_pointer_type(p))
            params.append(ptr)
            decls.append((p, ptr))
        else:
            params.append(p)
    body = func.body
    for buf, ptr in reversed(decls):
        body = tirx.DeclBuffer(buf, body, data=ptr)
    f = tirx.PrimFunc(params, body, func.ret_type, func.attrs)
    return f.with_attr({"global_symbol": name, "tirx.noalias": True})


def build_c(func: tirx.PrimFunc, name: str) -> str:
    """C source of one kernel (its prototypes of extern micro-kernels included)."""
    mod = tvm.IRModule({name: pointer_signature(func, name)})
    _ensure_pipeline()
    lib = tirx.build(mod, target=Target(C_TARGET), pipeline=PIPELINE)
    return _clean(lib.inspect_source())


def _clean(src: str) -> str:
    # The C host codegen declares a module context symbol and includes tvm-ffi headers that
    # a bare-metal kernel does not need.
    keep = []
    for line in src.splitlines():
        if re.match(r'\s*#include "tvm/', line) or "__tvm_ffi__library_ctx" in line:
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"
