"""The random (l+1)-layer network of the l+1 construction (Burkholz 2022, with fixed-size subset
sums; docs/design.md, "The l+1 construction").

A target with layers W_1 … W_l (d_0 → … → d_l) gets l+1 random ``nn.Linear`` modules,
numbered 0 … l here, every weight and bias Uniform[−1, 1] from the seed:

- module 0 (d_0 → hidden_0): the *univariate* layer. Block j < d_0 holds 2ρ_0 neurons that may
  read input j only (sign split as in the 2l construction); a target whose first layer has a
  bias gets one more block of 2ρ_0 neurons that read only the module's bias (the constant).
- module t, 1 ≤ t < l (hidden_{t−1} → hidden_t): hidden_t holds ρ_t *copies* of every neuron
  of target layer t, copy (i, c) at index i·ρ_t + c; when target layer t+1 has a bias, 2ρ_t
  *constant neurons* follow, which keep only their own (random) bias.
- module l (hidden_{l−1} → d_l): one copy of every output (ρ_l = 1), no bias.

Module t has a bias exactly when hidden_t has a constant block. Each module's weights and bias
come from their own generator, seeded from (seed, module), drawn row-major: the same seed and
sizes give the same network on every device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from sslth.construct import _mix
from sslth.target import TargetLayer

_WEIGHT, _BIAS = 0, 1


@dataclass(frozen=True)
class LPlus1Spec:
    """Sizes and seed of an l+1 random network.

    ``dims`` are the target's widths d_0 … d_l, ``biases`` whether each target layer has a bias,
    ``copies`` ρ_0 … ρ_{l−1} (ρ_0: neurons per input and sign pair of module 0).
    """

    dims: tuple[int, ...]
    biases: tuple[bool, ...]
    copies: tuple[int, ...]
    seed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        object.__setattr__(self, "biases", tuple(bool(b) for b in self.biases))
        object.__setattr__(self, "copies", tuple(int(c) for c in self.copies))
        if len(self.biases) != self.depth or len(self.copies) != self.depth:
            raise ValueError("an l+1 spec needs one bias flag and one ρ per target layer")
        if min(self.copies) < 1 or min(self.dims) < 1:
            raise ValueError(f"sizes must be positive: dims {self.dims}, ρ {self.copies}")

    @property
    def depth(self) -> int:
        """l, the number of target layers (the network has l+1 modules)."""
        return len(self.dims) - 1

    def rho(self, t: int) -> int:
        """ρ_t: copies per neuron of hidden_t (ρ_l = 1 at the output)."""
        return 1 if t == self.depth else self.copies[t]

    def has_constants(self, t: int) -> bool:
        """Whether hidden_t ends with a constant block (target layer t+1 has a bias)."""
        return t < self.depth and self.biases[t]

    def copy_width(self, t: int) -> int:
        """Neurons of hidden_t that carry values: 2ρ_0 per input for t = 0, else ρ_t d_t."""
        return 2 * self.copies[0] * self.dims[0] if t == 0 else self.rho(t) * self.dims[t]

    def constant_width(self, t: int) -> int:
        return 2 * self.rho(t) if self.has_constants(t) else 0

    def width(self, t: int) -> int:
        """Neurons of hidden_t (t = l: the outputs)."""
        return self.copy_width(t) + self.constant_width(t)

    def module_shape(self, t: int) -> tuple[int, int]:
        """(out, in) of module t."""
        return self.width(t), (self.dims[0] if t == 0 else self.width(t - 1))

    @property
    def random_params(self) -> int:
        """Every weight and bias of the l+1 modules: the paper's dense count m."""
        total = 0
        for t in range(self.depth + 1):
            out, inp = self.module_shape(t)
            total += out * inp + (out if self.has_constants(t) else 0)
        return total

    @property
    def block_params(self) -> int:
        """Entries that survive preprocessing: module 0's block diagonal (one per neuron), and
        every entry of the other modules."""
        return self.random_params - self.width(0) * (self.dims[0] - 1)

    def layer_params(self, t: int) -> int:
        """Random weights charged to target layer t (1-based): module t, and module 0 for t=1."""
        out, inp = self.module_shape(t)
        total = out * inp + (out if self.has_constants(t) else 0)
        if t == 1:
            out0, inp0 = self.module_shape(0)
            total += out0 * inp0 + (out0 if self.has_constants(0) else 0)
        return total

    def to_dict(self) -> dict:
        return {
            "dims": list(self.dims),
            "biases": list(self.biases),
            "copies": list(self.copies),
            "seed": self.seed,
        }


def _generator(seed: int, module: int, stream: int) -> torch.Generator:
    key = _mix(_mix(_mix(seed) ^ (0x4C31 + module)) ^ stream) % (2**63)
    return torch.Generator(device="cpu").manual_seed(key)


def module_weight(spec: LPlus1Spec, t: int) -> torch.Tensor:
    """Module t's random weight, (out, in) float32, regenerated from the seed."""
    out, inp = spec.module_shape(t)
    generator = _generator(spec.seed, t, _WEIGHT)
    return torch.rand(out, inp, generator=generator, dtype=torch.float32).mul_(2).sub_(1)


def module_bias(spec: LPlus1Spec, t: int) -> torch.Tensor | None:
    """Module t's random bias (out,), or None when hidden_t has no constant block."""
    if not spec.has_constants(t):
        return None
    generator = _generator(spec.seed, t, _BIAS)
    return torch.rand(spec.width(t), generator=generator, dtype=torch.float32).mul_(2).sub_(1)


def copy_rows(matrix: torch.Tensor, rho: int) -> torch.Tensor:
    """C_t M: every row of ``matrix`` repeated ρ times (copy (i, c) at row i·ρ + c)."""
    return matrix.repeat_interleave(rho, dim=0)


def replicated_layer(layer: TargetLayer, rho: int) -> TargetLayer:
    """C_t W_t (and C_t b_t): ``layer`` with every row copied ρ times."""
    bias = None if layer.bias is None else copy_rows(layer.bias[:, None], rho)[:, 0]
    return TargetLayer(copy_rows(layer.weight, rho), bias)


@dataclass
class LPlus1Masks:
    """One weight mask (out, in) and one bias mask (out,) or None per module."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor | None]

    @property
    def kept(self) -> int:
        return sum(int(w.count_nonzero()) for w in self.weights) + sum(
            int(b.count_nonzero()) for b in self.biases if b is not None
        )


def build_network(spec: LPlus1Spec, masks: LPlus1Masks) -> nn.Sequential:
    """The random network with the masks attached through ``torch.nn.utils.prune`` (float32,
    CPU): Linear, ReLU, …, Linear, l+1 Linear modules."""
    modules: list[nn.Module] = []
    for t in range(spec.depth + 1):
        out, inp = spec.module_shape(t)
        bias = module_bias(spec, t)
        linear = nn.Linear(inp, out, bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(module_weight(spec, t))
            if bias is not None:
                linear.bias.copy_(bias)
        prune.custom_from_mask(linear, "weight", masks.weights[t])
        if bias is not None:
            prune.custom_from_mask(linear, "bias", masks.biases[t])
        modules.append(linear)
        if t < spec.depth:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)
