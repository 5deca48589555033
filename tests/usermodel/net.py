"""A LeNet-style classifier as a user writes one: conv-ReLU-pool ×2, flatten, two linear
layers, the input normalisation inside `forward`. `make` is what `--model net.py:make` calls."""
import torch
from torch import nn

MEAN, STD = 0.2860, 0.3530          # Fashion-MNIST pixel statistics
POOL = nn.MaxPool2d


class LeNet(nn.Module):
    input_shape = (1, 28, 28)

    def __init__(self, pool=None, normalise: bool = True):
        super().__init__()
        pool = pool or POOL
        self.normalise = normalise
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), pool(2),
            nn.Conv2d(8, 16, 5), nn.ReLU(), pool(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        if self.normalise:
            x = (x - MEAN) / STD
        return self.classifier(self.features(x))


def make():
    return LeNet()


def make_avgpool():
    """The same net with average pooling and the normalisation left to the data."""
    return LeNet(nn.AvgPool2d, normalise=False)
