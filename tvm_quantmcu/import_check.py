"""Import checks: every torch op is one the layer graph supports (else one error naming the
torch module), and the float layer graph computes what the torch model computes (else an
error naming the first layer that diverges)."""
from __future__ import annotations

import numpy as np

# ATen ops (torch.export, eval mode) that the frontend turns into layers or folds away.
SUPPORTED_ATEN = frozenset("""
conv2d convolution _convolution linear addmm matmul mm t permute transpose
relu relu_ relu6 hardtanh hardtanh_ clamp clamp_ clamp_min
add add_ sub sub_ mul mul_ div div_ rsub
max_pool2d max_pool2d_with_indices avg_pool2d adaptive_avg_pool2d mean
flatten view reshape _unsafe_view squeeze unsqueeze contiguous
batch_norm _native_batch_norm_legit_no_training cudnn_batch_norm
pad constant_pad_nd cat concat dropout dropout_ feature_dropout alpha_dropout
clone alias detach detach_ identity lift_fresh_copy _assert_tensor_metadata sym_size
_to_copy to expand full scalar_tensor
""".split())

WAY_OUT = ("Replace it by a supported op in the model (e.g. ReLU for GELU/SiLU, max/avg "
           "pooling for other pooling) and fine-tune, or keep it out of the exported model "
           "(run it on the host after the network).")


class ImportCheckError(ValueError):
    """The imported float layer graph does not compute what the torch model computes."""


def _module_of(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "the model's forward"
    qual, typ = list(stack.values())[-1]
    typ = typ if isinstance(typ, str) else getattr(typ, "__qualname__", str(typ))
    return f"module {qual or '(top level)'} ({typ.rsplit('.', 1)[-1]})"


def unsupported_nodes(ep) -> list[tuple[str, str]]:
    """(op, torch module) of every ATen call of an exported program outside SUPPORTED_ATEN."""
    import operator
    bad = []
    for node in ep.graph.nodes:
        if node.op != "call_function" or node.target is operator.getitem:
            continue
        name = getattr(node.target, "__name__", str(node.target))
        op = name.split(".")[0]
        if op not in SUPPORTED_ATEN:
            bad.append((op, _module_of(node)))
    return bad


def check_supported(ep, error_cls, supported: str) -> None:
    """Raise error_cls naming the torch module and op of the first unsupported call."""
    bad = unsupported_nodes(ep)
    if bad:
        op, where = bad[0]
        more = f" (and {len(bad) - 1} more unsupported call(s))" if len(bad) > 1 else ""
        raise error_cls(f"{where} calls torch op '{op}', which tvm-quantmcu cannot compile"
                        f"{more}. Supported: {supported}. {WAY_OUT}")


def check_graph(model, graph, input_shape, layer_values, n: int = 4, rtol: float = 1e-3,
                seed: int = 0) -> float:
    """Run the float layer graph and the torch model on `n` random [0, 1] images; raise
    ImportCheckError naming the first diverging layer when they differ by more than
    rtol × max |torch output| (+ 1e-5). layer_values(x) gives the reference value (NCHW or
    flat) of every layer's output on one input x, in layer order (the Relax module's, which
    is torch's own translation). Returns the max difference."""
    import torch

    from .graph import run_float
    x = np.random.default_rng(seed).uniform(0, 1, (n, *input_shape)).astype(np.float32)
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy().reshape(n, -1)
    got = run_float(graph, x, keep=True)[graph.output]
    got = got.transpose(0, 3, 1, 2).reshape(n, -1)          # torch's C, H, W order
    diff = float(np.abs(got - want).max())
    if diff <= rtol * float(np.abs(want).max()) + 1e-5:
        return diff
    first = _first_diverging(graph, layer_values, x, rtol)
    raise ImportCheckError(
        f"the imported layer graph does not compute what the torch model computes "
        f"(max |difference| {diff:.4g} on {n} random inputs, output magnitude "
        f"{float(np.abs(want).max()):.4g}); first diverging layer: {first}. "
        "This is a frontend bug: please report it with the model.")


def _first_diverging(graph, layer_values, x, rtol) -> str:
    """The first layer whose float output differs from its reference value."""
    try:
        want = layer_values(x[:1])
    except Exception as e:                       # noqa: BLE001  (report what we can)
        return f"unknown (the Relax module could not be run per layer: {e})"
    from .graph import run_float
    env = run_float(graph, x[:1], keep=True)
    for l, w in zip(graph.layers, want):
        got = env[l.output]
        w = w.transpose(0, 2, 3, 1) if w.ndim == 4 else w.reshape(got.shape)
        if got.shape != w.shape or np.abs(got - w).max() > rtol * np.abs(w).max() + 1e-5:
            return (f"{l.name} ({l.kind}, output {graph.shapes[l.output]}, "
                    f"reading {', '.join(l.inputs)})")
    return "none (the layers agree one by one; the output differs)"
