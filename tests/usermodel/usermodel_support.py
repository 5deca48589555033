"""A user's model and data, made once per session: the LeNet of net.py trained for a few
epochs on a Fashion-MNIST subset, its state dict, an .npz of calibration/test images."""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NET = os.path.join(HERE, "net.py")
TRAIN_IMAGES = 6000
TEST_IMAGES = 2000


def train(factory: str, out_dir, epochs: int = 2, seed: int = 0):
    """Train net.py:factory on a Fashion-MNIST subset; returns the checkpoint path."""
    import importlib.util

    import torch
    import torch.nn.functional as F

    from tvm_quantmcu import data

    spec = importlib.util.spec_from_file_location("user_net", NET)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(seed)
    model = getattr(mod, factory)()
    tr = data.load("train")
    x = torch.from_numpy(tr.images(28, 0, TRAIN_IMAGES))
    y = torch.from_numpy(tr.labels[:TRAIN_IMAGES])
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(128):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    path = os.path.join(out_dir, f"{factory}.pt")
    torch.save(model.eval().state_dict(), path)
    return path




def fmnist_subset_npz(path) -> str:
    """An .npz of uint8 pixels: train_* (calibration) from the training split, test_* from
    the test split."""
    from tvm_quantmcu import data
    tr, te = data.load("train"), data.load("test")
    np.savez(path, train_images=tr.images_u8[:1000], train_labels=tr.labels[:1000],
             test_images=te.images_u8[:TEST_IMAGES], test_labels=te.labels[:TEST_IMAGES])
    return str(path)
