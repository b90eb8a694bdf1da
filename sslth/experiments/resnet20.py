"""ResNet-20 in CIFAR geometry (He et al. 2016, §4.2), randomly initialised with non-trivial
BatchNorm statistics: the scale benchmark of graph targets (docs/benchmarks.md).

3×32×32 inputs; a 3×3 stem conv to 16 channels with BatchNorm; three stages of three basic
blocks at 16, 32 and 64 channels (the first block of stages 2 and 3 has stride 2 and a 1×1 conv
+ BatchNorm projection on its skip: option B); global average pooling; Linear(64 → 10). About
270,000 weights (272,474 with the projections and the folded biases).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from sslth.experiments.digits_resnet import BasicBlock

INPUT_SHAPE = (3, 32, 32)


class ResNet20(nn.Module):
    """ResNet-20 (see the module docstring); ``widths`` may be shrunk for quick checks."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        layers, previous = [], widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(previous, width, stride))
                previous = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = functional.relu(self.bn(self.stem(x)))
        return self.fc(torch.flatten(self.pool(self.layers(out)), 1))


def random_resnet20(seed: int = 0, widths: tuple[int, int, int] = (16, 32, 64)) -> ResNet20:
    """A ResNet-20 with torch's default initialisation from ``seed`` and BatchNorm running
    statistics, scales and shifts drawn away from the identity (means in [−0.5, 0.5], variances
    in [0.5, 2], γ in [0.5, 1.5], β in [−0.25, 0.25]); in eval mode."""
    torch.manual_seed(seed)
    model = ResNet20(widths)
    generator = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            count = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(torch.rand(count, generator=generator) - 0.5)
                module.running_var.copy_(0.5 + 1.5 * torch.rand(count, generator=generator))
                module.weight.copy_(0.5 + torch.rand(count, generator=generator))
                module.bias.copy_(0.5 * torch.rand(count, generator=generator) - 0.25)
    return model.eval()
