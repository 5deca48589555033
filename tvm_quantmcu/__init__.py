"""tvm-quantmcu: patch-based inference and value-driven mixed precision for Cortex-M, on TVM."""
__version__ = "0.1.0"


def __getattr__(name):
    # tvm_quantmcu.build / tvm_quantmcu.compile_vm without importing TVM with the package
    if name in ("build", "compile_vm"):
        from . import relax_build
        return getattr(relax_build, name)
    raise AttributeError(f"module 'tvm_quantmcu' has no attribute {name!r}")
