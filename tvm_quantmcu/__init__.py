"""tvm-quantmcu: patch-based inference and value-driven mixed precision for Cortex-M, on TVM."""
__version__ = "0.1.0"
