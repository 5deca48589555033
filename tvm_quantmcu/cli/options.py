"""The model and data options every command shares, and turning them into the library's
ModelRef (pipeline.resolve) and DataSource."""
from __future__ import annotations

from . import UserError

MODEL_HELP = ("the model: a zoo name (quantmcu models), a torch.export program FILE.pt2 "
              "(torch.export.save), or FILE.py:FACTORY, a function returning the torch module "
              "(weights from --checkpoint)")


def add_model_options(p, default: str | None = "mbv2-fmnist", data: bool = True) -> None:
    p.add_argument("--model", default=default,
                   help=f"{MODEL_HELP} (default {default or 'mbv2-fmnist'})")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="state dict (torch.save(model.state_dict(), FILE)) for FILE.py:FACTORY, "
                        "or to replace a zoo model's committed weights")
    p.add_argument("--input-shape", default=None, metavar="C,H,W",
                   help="input shape without the batch axis, e.g. 1,28,28 (needed for "
                        "FILE.py:FACTORY unless the module has an input_shape attribute; a "
                        ".pt2 program and the zoo know theirs)")
    if data:
        add_data_options(p)


def add_data_options(p) -> None:
    p.add_argument("--data", default=None, metavar="NPZ|DIR",
                   help="calibration and test images: an .npz with images and labels (or "
                        "train_/val_/test_ arrays), or a folder with one sub-folder of images "
                        "per class (or train/ and test/ folders of those); pixels, not "
                        "normalised (default: Fashion-MNIST)")
    p.add_argument("--data-resize", action="store_true",
                   help="resize the --data images to the model's input (bilinear) instead of "
                        "refusing another size")


def model_ref(args, need_trained: str | None = None):
    """The ModelRef of --model/--checkpoint/--input-shape. need_trained: the command's verb,
    refused for a zoo architecture with random weights."""
    from .. import models, pipeline
    ref = pipeline.resolve(args.model or models.DEFAULT_MODEL, args.checkpoint,
                           getattr(args, "input_shape", None))
    if need_trained and not ref.trained:
        trained = ", ".join(n for n, m in models.REGISTRY.items() if m.trained)
        raise UserError(f"{ref.name} is architecture-only (random weights); {need_trained} a "
                        f"trained model ({trained}, or your own with --model)")
    return ref


def data_source(args, input_shape=None):
    """The DataSource of --data/--data-resize, checked against the model's input shape."""
    from .. import data
    src = data.source(getattr(args, "data", None), getattr(args, "data_resize", False))
    if input_shape is not None:
        src.check(input_shape)
    return src
