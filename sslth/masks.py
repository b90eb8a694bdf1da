"""From subset-sum picks to pruning masks, and masks in the ``torch.nn.utils.prune`` format."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from sslth.construct import PairSpec, SignInstances, input_of_neuron


@dataclass
class PairMasks:
    """The ticket's masks for one random pair, stored compactly.

    U keeps at most one entry per hidden neuron (its block-diagonal entry, or its bias for the
    bias block), so its mask is the (hidden,) vector ``kept_neurons``; V's mask is dense.
    """

    spec: PairSpec
    kept_neurons: torch.Tensor  # (hidden,) bool
    second: torch.Tensor  # (d_out, hidden) bool

    def first_weight_mask(self) -> torch.Tensor:
        """(hidden, d_in) bool mask of U's weight."""
        spec = self.spec
        mask = torch.zeros(spec.hidden, spec.d_in, dtype=torch.bool)
        rows = torch.arange(spec.block_size * spec.d_in)
        mask[rows, input_of_neuron(self.spec)[rows]] = self.kept_neurons[rows]
        return mask

    def first_bias_mask(self) -> torch.Tensor | None:
        if not self.spec.has_bias:
            return None
        mask = torch.zeros(self.spec.hidden, dtype=torch.bool)
        start = self.spec.block_size * self.spec.d_in
        mask[start:] = self.kept_neurons[start:]
        return mask


def masks_from_picks(spec: PairSpec, picks: list[tuple[SignInstances, torch.Tensor]]) -> PairMasks:
    """Turn per-sign (B, m) pick masks into V's mask; a U entry is kept iff some output uses
    its neuron."""
    second = torch.zeros(spec.d_out, spec.hidden, dtype=torch.uint8)
    for instances, pick in picks:
        n_blocks, width = instances.neuron.shape
        index = instances.neuron.reshape(1, -1).expand(spec.d_out, -1)
        chosen = (pick.cpu() & instances.valid.cpu()).reshape(spec.d_out, n_blocks * width)
        second.scatter_add_(1, index, chosen.to(torch.uint8))
    if second.numel() and int(second.max()) > 1:
        raise RuntimeError("a weight of V was picked twice: the instances overlap")
    second = second.bool()
    return PairMasks(spec, second.any(dim=0), second)


def apply_pair_masks(first: nn.Linear, second: nn.Linear, masks: PairMasks) -> None:
    """Attach the masks with ``prune.custom_from_mask``: ``weight_orig`` keeps the random
    weights, ``weight_mask`` the ticket."""
    prune.custom_from_mask(first, "weight", masks.first_weight_mask())
    if first.bias is not None:
        prune.custom_from_mask(first, "bias", masks.first_bias_mask())
    prune.custom_from_mask(second, "weight", masks.second)


def make_permanent(network: nn.Sequential) -> nn.Sequential:
    """A new plain ``nn.Sequential`` whose weights are the masked weights (zeros where pruned):
    the ``prune.remove`` of every pruned tensor, done on a copy so ``network`` keeps its masks."""
    modules: list[nn.Module] = []
    for module in network:
        if isinstance(module, nn.Linear):
            plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
            plain = plain.to(device=module.weight.device, dtype=module.weight.dtype)
            with torch.no_grad():
                plain.weight.copy_(module.weight)
                if module.bias is not None:
                    plain.bias.copy_(module.bias)
            modules.append(plain)
        elif isinstance(module, (nn.ReLU, nn.Flatten)):
            modules.append(type(module)())
        else:
            raise TypeError(f"unexpected module {type(module).__name__} in a ticket network")
    return nn.Sequential(*modules)


def linear_layers(network: nn.Sequential) -> list[nn.Linear]:
    return [module for module in network if isinstance(module, nn.Linear)]
