"""Which model a command means: a zoo name, a ``torch.export`` program file, or a factory.

    resolve("mbv2-fmnist")                                  # the zoo (committed checkpoint)
    resolve("net.pt2")                                      # torch.export.save(ep, "net.pt2")
    resolve("net.py:make", checkpoint="net.pt", input_shape=(1, 28, 28))
    resolve(my_module, input_shape=(1, 28, 28))             # a torch.nn.Module in hand

A :class:`ModelRef` is the one identity every stage uses: its ``name`` binds policies and
names output folders, its ``digest`` (a content hash of the files) binds policies and
firmware to these weights. ``ModelRef.build()`` gives the torch module in eval mode.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache

PROGRAM_SUFFIXES = (".pt2",)


class ModelSpecError(ValueError):
    """A model the user named cannot be found, built or fed (names the file and the fix)."""


@dataclass(frozen=True)
class ModelRef:
    spec: str                              # as the user wrote it
    kind: str                              # "zoo" | "program" | "factory" | "module"
    name: str                              # short name: policies, output folders, C symbols
    input_shape: tuple[int, int, int]      # C, H, W (batch 1)
    checkpoint: str | None = None
    digest: str = ""                       # content hash of model file(s) and weights
    trained: bool = True                   # False: a zoo architecture with random weights
    module: object = field(default=None, compare=False, repr=False)   # kind "module"

    def build(self):
        """The torch module, weights loaded, in eval mode."""
        if self.kind == "module":
            return self.module.eval()
        if self.kind == "zoo":
            from . import get
            return get(self.name, checkpoint=self.checkpoint)
        if self.kind == "program":
            return ProgramModule(_program(self.spec))
        return _factory_module(self.spec, self.checkpoint)

    def __str__(self) -> str:
        return self.name


def _program_module_class():
    import torch

    class _ProgramModule(torch.nn.Module):
        """The module of an exported program, usable like the model it came from: any batch
        size (a program exported for batch 1 runs image by image) and eval()/train() accepted
        (an exported program has its mode baked in)."""

        def __init__(self, ep):
            super().__init__()
            self.program = ep.module()
            batch = _program_placeholder_shapes(ep)[0][0]
            self.fixed_batch = batch if isinstance(batch, int) else None

        def train(self, mode: bool = True):
            return self

        def forward(self, x):
            if self.fixed_batch is None or x.shape[0] == self.fixed_batch:
                return self.program(x)
            b = self.fixed_batch
            return torch.cat([self.program(x[i:i + b]) for i in range(0, x.shape[0], b)])

    return _ProgramModule


def ProgramModule(ep):  # noqa: N802  (a class made on first use: torch is imported lazily)
    return _program_module_class()(ep)


def parse_input_shape(text: str | None) -> tuple[int, int, int] | None:
    """'3,224,224' / '3x224x224' / '1 28 28' → (C, H, W)."""
    if text is None:
        return None
    parts = text.replace("x", ",").replace("×", ",").replace(" ", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts if p)
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise ModelSpecError(f"--input-shape {text!r}: give C,H,W (e.g. 1,28,28) without the "
                             "batch axis")
    return dims


def resolve(model, checkpoint: str | None = None,
            input_shape: tuple[int, int, int] | str | None = None) -> ModelRef:
    """The :class:`ModelRef` of a zoo name, a ``.pt2`` program file or ``FILE.py:factory``.
    A ModelRef is returned as it is."""
    if isinstance(model, ModelRef):
        return model
    if isinstance(input_shape, str):
        input_shape = parse_input_shape(input_shape)
    if _is_module(model):
        return _resolve_module(model, checkpoint, input_shape)
    if not isinstance(model, str) or not model:
        raise ModelSpecError(f"model must be a zoo name, FILE.pt2 or FILE.py:factory, got "
                             f"{model!r}")
    files = [f for f in (_path_of(model), checkpoint) if f and os.path.exists(f)]
    stamp = tuple((os.path.abspath(f), os.path.getmtime(f), os.path.getsize(f)) for f in files)
    return _resolve(model, checkpoint, tuple(input_shape) if input_shape else None, stamp)


def _path_of(model: str) -> str:
    return model.rsplit(":", 1)[0] if ".py:" in model else model


@lru_cache(maxsize=16)
def _resolve(model: str, checkpoint, input_shape, _stamp) -> ModelRef:
    from . import REGISTRY, checkpoint_hash
    if model in REGISTRY:
        mi = REGISTRY[model]
        if input_shape is not None and tuple(input_shape) != mi.input_shape:
            raise ModelSpecError(f"zoo model {model} takes input {_fmt(mi.input_shape)}, not "
                                 f"--input-shape {_fmt(input_shape)}")
        digest = checkpoint_hash(model) if checkpoint is None else \
            _digest(model.encode(), _read(checkpoint, "checkpoint"))
        return ModelRef(model, "zoo", model, mi.input_shape, checkpoint, digest,
                        mi.trained or checkpoint is not None)
    if ".py:" in model:
        return _resolve_factory(model, checkpoint, input_shape)
    if model.endswith(PROGRAM_SUFFIXES):
        return _resolve_program(model, checkpoint, input_shape)
    if os.path.exists(model):
        raise ModelSpecError(f"{model}: not a model file; give a torch.export program "
                             f"(torch.export.save → FILE.pt2) or FILE.py:factory")
    from . import REGISTRY as zoo
    raise ModelSpecError(f"unknown model {model!r}: give a zoo name ({', '.join(sorted(zoo))}), "
                         f"a torch.export program FILE.pt2, or FILE.py:factory with "
                         f"--checkpoint")


def _is_module(model) -> bool:
    import sys
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _resolve_module(module, checkpoint, input_shape) -> ModelRef:
    """A module in hand (the Python API): named after its class, identified by its class,
    input shape and weights."""
    import io

    import torch
    if checkpoint is not None:
        _load_state(module, checkpoint, type(module).__name__)
    shape = input_shape or getattr(module, "input_shape", None)
    cls = type(module).__name__
    if shape is None:
        raise ModelSpecError(f"{cls}: give the input shape (C, H, W) of the module")
    shape = tuple(int(v) for v in shape)
    module.eval()
    _check_forward(module, shape, cls)
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    digest = _digest(cls.encode(), repr(shape).encode(), buf.getvalue())
    return ModelRef(cls, "module", _safe(cls.lower()), shape, None, digest, module=module)


def _resolve_program(path: str, checkpoint, input_shape) -> ModelRef:
    if checkpoint is not None:
        raise ModelSpecError(f"{path} is a torch.export program and holds its weights; "
                             "--checkpoint is for FILE.py:factory models")
    ep = _program(path)
    shape = _program_input_shape(ep, path)
    if input_shape is not None and tuple(input_shape) != shape:
        raise ModelSpecError(f"{path} was exported for input {_fmt(shape)}, not --input-shape "
                             f"{_fmt(input_shape)}; export it again with that shape")
    name = _safe(os.path.splitext(os.path.basename(path))[0])
    return ModelRef(path, "program", name, shape, None,
                    _digest(b"program", _read(path, "program")))


def _resolve_factory(spec: str, checkpoint, input_shape) -> ModelRef:
    path, factory = spec.rsplit(":", 1)
    module = _factory_module(spec, checkpoint)
    shape = tuple(input_shape) if input_shape else getattr(module, "input_shape", None)
    if shape is None:
        raise ModelSpecError(f"{spec}: the input shape cannot be inferred from a factory; give "
                             "--input-shape C,H,W (or set an `input_shape` attribute on the "
                             "module)")
    shape = tuple(int(v) for v in shape)
    _check_forward(module, shape, spec)
    name = _safe(f"{os.path.splitext(os.path.basename(path))[0]}-{factory}")
    parts = [_read(path, "model file"), factory.encode(), repr(shape).encode()]
    if checkpoint is not None:
        parts.append(_read(checkpoint, "checkpoint"))
    return ModelRef(spec, "factory", name, shape, checkpoint, _digest(*parts))


@lru_cache(maxsize=4)
def _program(path: str):
    import torch
    if not os.path.exists(path):
        raise ModelSpecError(f"model file {path} does not exist")
    try:
        return torch.export.load(path)
    except Exception as e:  # torch raises many kinds for a file that is not a program
        raise ModelSpecError(f"{path} is not a torch.export program (save one with "
                             f"torch.export.save(torch.export.export(model, (x,)), "
                             f"'{os.path.basename(path)}')): {_first_line(e)}") from e


def _program_placeholder_shapes(ep) -> list[tuple]:
    """Shapes of the user inputs of an exported program (ints, or symbols when dynamic)."""
    import torch
    users = [s.arg.name for s in ep.graph_signature.input_specs
             if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    return [tuple(nodes[u].meta["val"].shape) if "val" in nodes[u].meta else () for u in users]


def _program_input_shape(ep, path: str) -> tuple[int, int, int]:
    shapes = _program_placeholder_shapes(ep)
    if len(shapes) != 1 or len(shapes[0]) != 4:
        raise ModelSpecError(f"{path}: the program takes {len(shapes)} inputs "
                             f"{[list(s) for s in shapes]}; one N×C×H×W image input expected")
    try:
        return tuple(int(d) for d in shapes[0][1:])
    except TypeError as e:
        raise ModelSpecError(f"{path}: the image dimensions {shapes[0][1:]} are dynamic; "
                             "export with a fixed C×H×W") from e


def _factory_module(spec: str, checkpoint):
    import torch
    path, factory = spec.rsplit(":", 1)
    if not os.path.exists(path):
        raise ModelSpecError(f"model file {path} does not exist")
    mod_name = "quantmcu_user_" + hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    try:
        loader = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    except Exception as e:
        raise ModelSpecError(f"cannot import {path}: {type(e).__name__}: {_first_line(e)}") \
            from e
    fn = getattr(module, factory, None)
    if not callable(fn):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not
                       k.startswith("_") and getattr(v, "__module__", None) == mod_name)
        raise ModelSpecError(f"{path} has no function {factory!r} (callables defined there: "
                             f"{', '.join(found) or 'none'})")
    try:
        model = fn()
    except Exception as e:
        raise ModelSpecError(f"{spec}: calling {factory}() failed: {type(e).__name__}: "
                             f"{_first_line(e)}") from e
    if not isinstance(model, torch.nn.Module):
        raise ModelSpecError(f"{spec}: {factory}() returned {type(model).__name__}, not a "
                             "torch.nn.Module")
    if checkpoint is not None:
        _load_state(model, checkpoint, spec)
    return model.eval()


def _load_state(model, checkpoint: str, spec: str) -> None:
    import torch
    if not os.path.exists(checkpoint):
        raise ModelSpecError(f"checkpoint {checkpoint} does not exist")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelSpecError(f"checkpoint {checkpoint} is not a torch state dict: "
                             f"{_first_line(e)}") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except Exception as e:
        raise ModelSpecError(f"checkpoint {checkpoint} does not fit {spec}: "
                             f"{_first_line(e)}") from e


def _check_forward(module, shape, spec: str) -> None:
    import torch
    try:
        with torch.no_grad():
            out = module(torch.zeros((1, *shape)))
    except Exception as e:
        raise ModelSpecError(f"{spec} does not accept input 1×{_fmt(shape)}: "
                             f"{_first_line(e)}; check --input-shape") from e
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelSpecError(f"{spec} returns {got} for one image; a classifier returning "
                             "N×classes logits is expected")


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ModelSpecError(f"{what} {path}: {e.strerror}") from e


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _fmt(shape) -> str:
    return "×".join(str(int(d)) for d in shape)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
