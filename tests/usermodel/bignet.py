"""An ImageNet-size CNN written the way users write them: explicit zero pads before the
convolutions, BatchNorm as separate modules applied in `forward` (not folded, not in an
nn.Sequential after its conv), ReLU6 as a function; MobileNetV2's layout at 224×224×3
(52 convolutions). Random weights and BatchNorm statistics: for memory and time, not accuracy."""
import torch
import torch.nn.functional as F
from torch import nn

CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
       (6, 160, 3, 2), (6, 320, 1, 1)]


def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
    return bn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hid = cin * t
        self.expand = nn.Conv2d(cin, hid, 1, bias=False) if t != 1 else None
        self.bn0 = _bn(hid) if t != 1 else None
        self.pad = nn.ZeroPad2d(1)
        self.dw = nn.Conv2d(hid, hid, 3, stride, 0, groups=hid, bias=False)
        self.bn1 = _bn(hid)
        self.project = nn.Conv2d(hid, cout, 1, bias=False)
        self.bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.expand is not None:
            y = F.relu6(self.bn0(self.expand(y)))
        y = F.relu6(self.bn1(self.dw(self.pad(y))))
        y = self.bn2(self.project(y))
        return x + y if self.residual else y


class BigNet(nn.Module):
    input_shape = (3, 224, 224)

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d(1)
        self.stem = nn.Conv2d(3, 32, 3, 2, 0, bias=False)
        self.stem_bn = _bn(32)
        blocks, cin = [], 32
        for t, c, n, s in CFG:
            for i in range(n):
                blocks.append(Block(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, 1280, 1, bias=False)
        self.head_bn = _bn(1280)
        self.fc = nn.Linear(1280, 1000)

    def forward(self, x):
        x = F.relu6(self.stem_bn(self.stem(self.pad(x))))
        for b in self.blocks:
            x = b(x)
        x = F.relu6(self.head_bn(self.head(x)))
        return self.fc(x.mean((2, 3)))


def make():
    torch.manual_seed(0)
    return BigNet()
