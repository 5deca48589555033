"""Train a zoo model on Fashion-MNIST, reproducibly, on the CPU.

    python -m tvm_quantmcu.models.train --model mbv2-fmnist [--epochs N]

Writes ``checkpoints/NAME.pt`` (state dict, BatchNorm unfolded) and ``checkpoints/NAME.json``
(test top-1 on the 10,000 test images, validation top-1, training settings).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import data
from . import REGISTRY, info


def _augment(x_u8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip and ±2-pixel translation at 28×28 (zero fill)."""
    n = x_u8.shape[0]
    out = np.zeros_like(x_u8)
    padded = np.pad(x_u8, ((0, 0), (2, 2), (2, 2)))
    dy, dx = rng.integers(0, 5, n), rng.integers(0, 5, n)
    flip = rng.random(n) < 0.5
    for i in range(n):
        img = padded[i, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
        out[i] = img[:, ::-1] if flip[i] else img
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: data.Split, size: int, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for x, y in split.batches(size, batch):
        correct += int((model(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
    return correct / len(split)


def train(name: str, epochs: int | None = None, threads: int = 2, quiet: bool = False) -> dict:
    mi = info(name)
    if not mi.trained:
        raise SystemExit(f"{name} is architecture-only; nothing to train")
    cfg = dict(mi.train_cfg)
    if epochs is not None:
        cfg["epochs"] = epochs
    torch.set_num_threads(threads)
    torch.manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    size = mi.input_shape[1]
    tr, va, te = data.load("train"), data.load("val"), data.load("test")
    model = mi.build().to(memory_format=torch.channels_last)  # 2x faster on CPU
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9, nesterov=True,
                          weight_decay=4e-5)
    steps = cfg["epochs"] * (len(tr) // cfg["batch"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg["lr"], total_steps=steps,
                                                pct_start=0.15)
    t0 = time.time()
    for ep in range(cfg["epochs"]):
        model.train()
        perm = rng.permutation(len(tr))
        loss_sum = 0.0
        for s in range(0, len(tr) - cfg["batch"] + 1, cfg["batch"]):
            idx = perm[s:s + cfg["batch"]]
            x = torch.from_numpy(data.resize(_augment(tr.images_u8[idx], rng), size))
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(tr.labels[idx])
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss) * len(idx)
        acc = evaluate(model, va, size)
        if not quiet:
            print(f"epoch {ep + 1}/{cfg['epochs']} loss {loss_sum / len(tr):.4f} "
                  f"val {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
    metrics = {"model": name, "val_top1": evaluate(model, va, size),
               "test_top1": evaluate(model, te, size), "test_images": len(te),
               "train_seconds": round(time.time() - t0, 1), "train_cfg": cfg,
               "params": sum(p.numel() for p in model.parameters()),
               "torch": torch.__version__}
    os.makedirs(os.path.dirname(mi.checkpoint), exist_ok=True)
    torch.save(model.state_dict(), mi.checkpoint)
    with open(mi.metrics_file, "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=[n for n, m in REGISTRY.items() if m.trained])
    ap.add_argument("--epochs", type=int, default=None, help="override the model's epoch count")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    print(json.dumps(train(args.model, args.epochs, args.threads), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
