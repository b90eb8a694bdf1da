"""Edge-popup (Ramanujan et al., "What's Hidden in a Randomly Weighted Neural Network?", CVPR
2020): training-by-pruning on a frozen random network.

Every weight (and bias) tensor of the network's ``nn.Linear`` modules gets a real-valued score
per entry. The forward pass keeps, in each tensor, the entries with the largest |score| (a fixed
count per tensor: *top-k per layer*) and multiplies the frozen random weights by that 0/1 mask;
the backward pass treats the mask as the identity (the *straight-through* estimator), so a
score's gradient is the gradient of the loss with respect to its masked weight times the
weight. Only the scores are trained; the random weights never change.

The counts per tensor are fixed before training: the requested number of kept entries is split
over the tensors in proportion to their sizes (largest remainders), so the mask always keeps
exactly that many entries. A count that leaves a weight tensor with no entry is refused before
any training.

Used by ``scripts/edge_popup_baseline.py`` to ask whether training finds the tickets sslth
certifies (docs/benchmarks.md, "Does training find the ticket?").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional

from sslth.errors import ConfigError
from sslth.modules import effective_parameter


def allocate(sizes: list[int], kept: int) -> list[int]:
    """Split ``kept`` entries over tensors of ``sizes`` in proportion to the sizes (largest
    remainders; ties to the earlier tensor): the counts sum to exactly ``kept``."""
    total = sum(sizes)
    if not 0 < kept <= total:
        raise ConfigError(f"kept must be in [1, {total}], got {kept}")
    shares = [kept * size / total for size in sizes]
    counts = [math.floor(share) for share in shares]
    order = sorted(range(len(sizes)), key=lambda i: (counts[i] - shares[i], i))
    for i in order[: kept - sum(counts)]:
        counts[i] += 1
    return counts


class _TopK(torch.autograd.Function):
    """0/1 mask of the ``k`` largest entries forward; the identity backward (straight-through).
    Called on |scores|, so that autograd carries the sign of each score into its gradient."""

    @staticmethod
    def forward(ctx, magnitudes: torch.Tensor, k: int) -> torch.Tensor:
        mask = torch.zeros_like(magnitudes)
        if k:
            flat = mask.view(-1)
            flat[magnitudes.detach().reshape(-1).topk(k, sorted=False).indices] = 1.0
        return mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class EdgePopup(nn.Module):
    """Scores on a frozen random ``nn.Sequential`` of Linear, ReLU and Flatten modules.

    Args:
        network: the random network (read once: its weights, as its forward uses them, are
            copied and frozen; the network itself is never modified).
        kept: entries to keep over all weight and bias tensors (e.g. a ticket's kept count).
        dtype: dtype of the frozen weights and of training.
        seed: seed of the scores' initialisation.

    Raises:
        ConfigError: a module other than Linear, ReLU or Flatten, or a ``kept`` that leaves a
            weight tensor with no entry.
    """

    def __init__(
        self,
        network: nn.Sequential,
        kept: int,
        *,
        dtype: torch.dtype = torch.float64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.layout: list[tuple[str, int]] = []  # ("linear", index of its tensors) or ("relu", 0)
        tensors: list[torch.Tensor] = []
        for position, module in enumerate(network):
            if isinstance(module, nn.Linear):
                self.layout.append(("linear", len(tensors)))
                tensors.append(effective_parameter(module, "weight").to(dtype).clone())
                bias = effective_parameter(module, "bias")
                tensors.append(None if bias is None else bias.to(dtype).clone())
            elif isinstance(module, (nn.ReLU, nn.Flatten)):
                self.layout.append((type(module).__name__.lower(), 0))
            else:
                raise ConfigError(
                    f"edge-popup takes Linear, ReLU and Flatten modules; module {position} is "
                    f"a {type(module).__name__}"
                )
        self.frozen = [t for t in tensors]
        present = [i for i, t in enumerate(tensors) if t is not None]
        counts = allocate([tensors[i].numel() for i in present], int(kept))
        self.counts = [0] * len(tensors)
        for i, count in zip(present, counts, strict=True):
            self.counts[i] = count
        empty = [i // 2 for i in present if i % 2 == 0 and self.counts[i] == 0]
        if empty:
            raise ConfigError(
                f"keeping {kept} of {sum(t.numel() for t in tensors if t is not None)} entries "
                f"leaves Linear layer {empty[0]} with no weight: raise the density"
            )
        generator = torch.Generator().manual_seed(seed)
        self.scores = nn.ParameterList()
        for tensor in tensors:
            if tensor is None:
                self.scores.append(nn.Parameter(torch.zeros(0, dtype=dtype)))
                continue
            bound = 1.0 / math.sqrt(tensor.shape[-1] if tensor.dim() == 2 else tensor.numel())
            scores = (torch.rand(tensor.shape, generator=generator, dtype=dtype) * 2 - 1) * bound
            self.scores.append(nn.Parameter(scores))

    @property
    def kept(self) -> int:
        return sum(self.counts)

    @property
    def total(self) -> int:
        return sum(t.numel() for t in self.frozen if t is not None)

    def masks(self) -> list[torch.Tensor | None]:
        """The current 0/1 masks (bool), one per weight and bias tensor (None: no bias)."""
        return [
            None if tensor is None else _TopK.apply(scores.abs(), count).bool()
            for tensor, scores, count in zip(self.frozen, self.scores, self.counts, strict=True)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for kind, index in self.layout:
            if kind == "linear":
                weight = self.frozen[index] * _TopK.apply(
                    self.scores[index].abs(), self.counts[index]
                )
                bias = self.frozen[index + 1]
                if bias is not None:
                    bias = bias * _TopK.apply(self.scores[index + 1].abs(), self.counts[index + 1])
                x = functional.linear(x, weight, bias)
            elif kind == "relu":
                x = torch.relu(x)
            else:
                x = x.reshape(x.shape[0], -1)
        return x

    def train_scores(
        self,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
        steps: int,
        *,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
    ) -> list[float]:
        """SGD with momentum and a cosine learning rate on the scores only.

        Args:
            loss: ``loss(outputs, targets)``, a scalar.
            batches: yields (inputs, targets) for each step.
            steps: optimisation steps.
            lr, momentum, weight_decay: SGD's (the weight decay acts on the scores).

        Returns:
            The loss of every step.
        """
        optimizer = torch.optim.SGD(
            self.scores.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
        losses = []
        for _ in range(steps):
            inputs, targets = next(batches)
            optimizer.zero_grad()
            value = loss(self(inputs), targets)
            value.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(value.detach()))
        return losses


__all__ = ["EdgePopup", "allocate"]
