"""From subset-sum picks to pruning masks, and masks in the ``torch.nn.utils.prune`` format."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from sslth.construct import PairSpec, input_of_neuron
from sslth.modules import effective_parameter


@dataclass
class PairMasks:
    """The ticket's masks for one random pair, stored compactly.

    U keeps at most one entry per hidden neuron (its block-diagonal entry, or its bias for the
    bias block), so its mask is the (hidden,) vector ``kept_neurons``; V's mask is dense, in V's
    own shape (d_out, hidden, *kernel).
    """

    spec: PairSpec
    kept_neurons: torch.Tensor  # (hidden,) bool
    second: torch.Tensor  # (d_out, hidden, *kernel) bool

    def first_weight_mask(self) -> torch.Tensor:
        """(hidden, d_in) bool mask of U's weight (reshape it to a 1×1 conv's weight)."""
        spec = self.spec
        mask = torch.zeros(spec.hidden, spec.d_in, dtype=torch.bool)
        rows = torch.arange(spec.weight_neurons)
        mask[rows, input_of_neuron(self.spec)[rows]] = self.kept_neurons[rows]
        return mask

    def first_bias_mask(self) -> torch.Tensor | None:
        if not self.spec.has_bias:
            return None
        mask = torch.zeros(self.spec.hidden, dtype=torch.bool)
        start = self.spec.weight_neurons
        mask[start:] = self.kept_neurons[start:]
        return mask


def apply_pair_masks(first: nn.Module, second: nn.Module, masks: PairMasks) -> None:
    """Attach the masks with ``prune.custom_from_mask``: ``weight_orig`` keeps the random
    weights, ``weight_mask`` the ticket."""
    prune.custom_from_mask(first, "weight", masks.first_weight_mask().view(first.weight.shape))
    if first.bias is not None:
        prune.custom_from_mask(first, "bias", masks.first_bias_mask())
    prune.custom_from_mask(second, "weight", masks.second)


def plain_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` without pruning: each pruned tensor made permanent as
    ``torch.nn.utils.prune.remove`` does (original times mask), in the module's own dtype and
    device. Only the module kinds a ticket is made of are copied."""
    if type(module) is nn.Linear:
        copy = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    elif type(module) is nn.Conv2d:
        copy = nn.Conv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )
    else:
        return type(module)(**_constructor_arguments(module))
    weight = effective_parameter(module, "weight")
    copy = copy.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        copy.weight.copy_(weight)
        bias = effective_parameter(module, "bias")
        if bias is not None:
            copy.bias.copy_(bias)
    return copy


def _constructor_arguments(module: nn.Module) -> dict:
    """The arguments that rebuild a parameter-free module (ReLU, Flatten, pools)."""
    if isinstance(module, nn.ReLU):
        return {}
    if isinstance(module, nn.Flatten):
        return {"start_dim": module.start_dim, "end_dim": module.end_dim}
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        names = ("kernel_size", "stride", "padding", "ceil_mode")
        extra = ("dilation",) if isinstance(module, nn.MaxPool2d) else ("count_include_pad",)
        return {name: getattr(module, name) for name in names + extra}
    raise TypeError(f"unexpected module {type(module).__name__} in a ticket network")
