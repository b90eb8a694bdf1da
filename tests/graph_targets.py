"""Random targets written as people write them: residual blocks, BatchNorm with non-trivial
running statistics, Dropout, global average pooling (used by tests/test_graph.py and
scripts/attack_sweep.py graph)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from sslth.experiments.digits_resnet import BasicBlock


def randomize_batch_norms(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every BatchNorm running statistics and an affine map far from the identity."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            count = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(torch.rand(count, generator=generator) - 0.5)
                module.running_var.copy_(0.25 + torch.rand(count, generator=generator) * 2)
                module.weight.copy_(0.5 + torch.rand(count, generator=generator))
                module.bias.copy_(torch.rand(count, generator=generator) - 0.5)
    return model


class DenseBlock(nn.Module):
    """out = relu(x + bn(fc2(relu(fc1(x))))): a residual MLP block."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width, bias=False)
        self.bn = nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.relu(x + self.bn(self.fc2(torch.relu(self.fc1(x)))))


class ResidualMLP(nn.Module):
    def __init__(self, d_in: int, width: int, hidden: int, blocks: int, d_out: int) -> None:
        super().__init__()
        self.stem = nn.Linear(d_in, width)
        self.blocks = nn.Sequential(*[DenseBlock(width, hidden) for _ in range(blocks)])
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(width, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.size(0), -1)
        return self.head(self.drop(self.blocks(torch.relu(self.stem(x)))))


class SmallResNet(nn.Module):
    """Stem conv+BN, residual blocks (the widths given; a change of width projects), global
    average pooling, a linear head."""

    def __init__(self, channels: int, widths: list[int], classes: int, strides=None) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        strides = strides or [1] * len(widths)
        blocks, previous = [], widths[0]
        for width, stride in zip(widths, strides, strict=True):
            blocks.append(BasicBlock(previous, width, stride))
            previous = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = functional.relu(self.bn(self.stem(x)))
        out = self.layers(out)
        return self.fc(torch.flatten(self.pool(out), 1))


def random_graph_target(seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    """A random residual target in eval mode and its input shape: even seeds a residual MLP,
    odd seeds a small conv ResNet (half of them with a projection block)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if seed % 2 == 0:
        d_in = 2 + seed % 3
        model = ResidualMLP(d_in, 3, 3, 1 + seed % 4 // 2, 2)
        shape: tuple[int, ...] = (d_in,)
    else:
        widths = [2, 3] if seed % 4 == 1 else [2, 2]
        model = SmallResNet(1, widths, 2, strides=[1, 2] if seed % 4 == 1 else None)
        shape = (1, 4, 4)
    for parameter in model.parameters():
        with torch.no_grad():
            parameter.copy_(torch.rand(parameter.shape, generator=generator) - 0.5)
    return randomize_batch_norms(model, generator).eval(), shape
