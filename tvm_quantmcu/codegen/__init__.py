"""C model generator: a lowered Relax module → a self-contained bare-metal C library.

``generate_module(mod, out_dir)`` reads the module ``relax_passes.LowerToQuantMCUKernels``
produced (:mod:`.lowered`: its kernel calls, patch functions and VDPC route) and writes
``qmcu_model.c/.h`` (weights and requantization constants as const data, one static arena
planned from the tensors' lifetimes, no heap, no TVM runtime), the kernels' C (one file per
kernel instance, from :mod:`tvm_quantmcu.topi`) and the headers they need, plus
``model.json`` (metadata and the memory report). The entry point
``int qmcu_run(const uint8_t *input, uint8_t *output)`` runs the patch loop with the on-device
VDPC check, then the layer-by-layer stage; it implements
``micro_project/firmware/include/qmcu_model_api.h``.
"""
from .generate import GeneratedModel, generate_module, program_of_module
from .lowered import LoweredModel, LoweredModuleError, read_lowered
from .program import Program, UnsupportedModelError, build_program, weight_constants

__all__ = ["GeneratedModel", "LoweredModel", "LoweredModuleError", "Program",
           "UnsupportedModelError", "build_program", "generate_module", "program_of_module",
           "read_lowered", "weight_constants"]
