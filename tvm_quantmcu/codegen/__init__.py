"""C model generator: a plan + policy → a self-contained bare-metal C library.

``generate(graph, policy, out_dir)`` writes ``qmcu_model.c/.h`` (weights and requantization
constants as const data, one static arena sized by a liveness planner, no heap, no TVM runtime),
the kernels' C (one file per kernel instance, from :mod:`tvm_quantmcu.topi`) and the headers they
need, plus ``model.json`` (metadata and the memory report). The entry point
``int qmcu_run(const uint8_t *input, uint8_t *output)`` runs the patch loop with the on-device
VDPC check, then the layer-by-layer stage; it implements
``micro_project/firmware/include/qmcu_model_api.h``.
"""
from .generate import GeneratedModel, generate, generate_module, program_of_module
from .program import (Program, UnsupportedModelError, build_program, predicted_peak,
                      weight_constants)

__all__ = ["GeneratedModel", "Program", "UnsupportedModelError", "build_program", "generate",
           "generate_module", "predicted_peak", "program_of_module", "weight_constants"]
