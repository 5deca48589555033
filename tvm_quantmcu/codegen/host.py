"""Build a generated model for the host (gcc, portable micro-kernels) and run it via ctypes."""
from __future__ import annotations

import ctypes
import hashlib
import subprocess
from pathlib import Path

import numpy as np

from .generate import GeneratedModel

WARN_FLAGS = ("-Wall", "-Wextra")


class HostBuildError(RuntimeError):
    pass


def build_host_library(gen: GeneratedModel, opt: str = "-O2", werror: bool = True) -> Path:
    """Compile the library into <dir>/build/libqmcu_model.so (warnings are errors by
    default: the generated code must be warnings-free)."""
    d = gen.directory
    key = hashlib.sha1(b"".join(p.read_bytes() for p in sorted(d.glob("*.[ch]")))
                       + opt.encode() + bytes(werror)).hexdigest()[:12]
    so = d / "build" / f"libqmcu_model_{key}.so"
    if so.exists():
        return so
    so.parent.mkdir(exist_ok=True)
    cmd = ["gcc", "-std=c11", opt, *WARN_FLAGS, *(("-Werror",) if werror else ()), "-shared",
           "-fPIC", f"-I{d}", *map(str, gen.sources), "-o", str(so)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise HostBuildError(f"host build of {d} failed:\n{p.stderr.strip()[:4000]}")
    return so


class HostModel:
    """The generated model loaded in this process."""

    def __init__(self, gen: GeneratedModel, opt: str = "-O2"):
        self.gen = gen
        self.lib = ctypes.CDLL(str(build_host_library(gen, opt)))
        self.meta = gen.meta
        self.patches = self.meta["patches"]
        self._routing = (ctypes.c_uint8 * max(self.patches, 1)).in_dll(self.lib, "qmcu_routing")

    def run(self, x_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(output values N×classes, routing N×patches) for NHWC uint8 images N×H×W×C."""
        x_q = np.ascontiguousarray(x_q, np.uint8)
        n = len(x_q)
        out = np.zeros((n, self.meta["output_bytes"]), np.uint8)
        routing = np.zeros((n, self.patches), bool)
        buf = ctypes.create_string_buffer(self.meta["output_bytes"])
        for i in range(n):
            rc = self.lib.qmcu_run(x_q[i].ctypes.data_as(ctypes.c_void_p), buf)
            if rc != 0:
                raise RuntimeError(f"qmcu_run returned {rc} on image {i}")
            out[i] = np.frombuffer(buf.raw, np.uint8)
            routing[i] = np.frombuffer(bytes(self._routing), np.uint8)[:self.patches] != 0
        return out.astype(np.int32), routing
