"""Integer semantics: observers, quantization parameters, fixed-point requantization,
sub-byte packing, and the integer numpy reference executor (the golden model)."""
from .fixedpoint import quantize_multiplier, requantize, shared_shift_multipliers
from .observers import TensorStats, observe, ranges
from .packing import pack, packed_bytes, packed_channels, unpack
from .policy import POLICIES, Policy, PolicyMismatchError, integer_thresholds
from .qparams import ActQuant, quantize_weights, weight_range
from .reference import (INPUT_QUANT, QGraph, QLayer, add_int, avgpool_int, concat_int,
                        conv2d_int, dense_int, input_quant, maxpool_int, quantize_graph,
                        quantize_input, quantize_layer, requant_int, run_int)

__all__ = [
    "quantize_multiplier", "requantize", "shared_shift_multipliers", "TensorStats", "observe",
    "ranges", "pack", "unpack", "packed_bytes", "packed_channels", "ActQuant", "quantize_weights",
    "weight_range", "INPUT_QUANT", "QGraph", "QLayer", "add_int", "avgpool_int", "concat_int",
    "conv2d_int", "dense_int", "input_quant", "maxpool_int", "quantize_graph", "quantize_input",
    "quantize_layer", "requant_int", "run_int", "POLICIES", "Policy", "PolicyMismatchError",
    "integer_thresholds",
]
