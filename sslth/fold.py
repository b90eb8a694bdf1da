"""Folding an eval-mode BatchNorm into the layer before it, in float64, with a bound on the
fold's own rounding (docs/design.md, "Graph targets").

With s = γ / √(var + eps), the layer W x + b followed by the BatchNorm computes
W′ x + b′ with W′ = diag(s) W and b′ = s (b − μ) + β: the same function in exact arithmetic.
The fold is computed in float64 from the model's buffers (float32 values are exact in
float64), so W′ and b′ carry a few float64 roundings: s takes three (the sum, the square root,
the division), each entry of W′ one more, each entry of b′ two more (the difference, the
product) and the sum with β. Hence, entrywise, |ΔW′| ≤ γ₅ |W′| and
|Δb′| ≤ γ₈ (|s (b − μ)| + |β|), with γ_n = n u / (1 − n u), u = 2⁻⁵³. The certificate counts
the fold in its exact part through :attr:`TargetLayer.fold_error`: ‖ΔW′‖₂ ≤ √taps ‖ΔW′‖_F (a
conv's operator is a sum of one matrix per kernel position) and ‖Δb′‖.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from sslth.errors import TargetError, UnsupportedTargetError

_U = 2.0**-53


def _gamma(n: int) -> float:
    return n * _U / (1 - n * _U)


def _buffer(module: nn.Module, name: str, what: str) -> torch.Tensor:
    value = getattr(module, name, None)
    if value is None:
        raise UnsupportedTargetError(
            f"{what} has no {name} (track_running_stats=False normalizes by batch statistics "
            "even in eval mode); only BatchNorm with running statistics can be folded"
        )
    value = value.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(value).all():
        raise TargetError(f"{what}: {name} has NaN or Inf entries")
    return value


def fold_batch_norm(layer, module: nn.Module, name: str):
    """``layer`` (a float64 :class:`~sslth.target.TargetLayer`) followed by the eval-mode
    BatchNorm ``module``, as one layer with its fold error bounds.

    Args:
        layer: the layer the BatchNorm reads.
        module: an ``nn.BatchNorm1d`` / ``nn.BatchNorm2d`` in eval mode.
        name: where the BatchNorm is, for messages.

    Returns:
        The folded layer.

    Raises:
        TargetError: channels that do not match, non-finite or non-positive variance.
        UnsupportedTargetError: no running statistics.
    """
    if module.num_features != layer.d_out:
        raise TargetError(
            f"{name}: normalizes {module.num_features} channels, the layer before it has "
            f"{layer.d_out}"
        )
    mean = _buffer(module, "running_mean", name)
    variance = _buffer(module, "running_var", name)
    if bool((variance <= 0).any()):
        channel = int((variance <= 0).nonzero()[0])
        raise TargetError(
            f"{name}: running variance {float(variance[channel]):.3g} of channel {channel} is "
            "not positive (an untrained or corrupted BatchNorm); it cannot be folded"
        )
    count = layer.d_out
    gamma = torch.ones(count, dtype=torch.float64)
    beta = torch.zeros(count, dtype=torch.float64)
    if module.affine:
        gamma = _weight(module, "weight", name)
        beta = _weight(module, "bias", name)
    scale = gamma / torch.sqrt(variance + float(module.eps))
    shape = (count,) + (1,) * (layer.weight.dim() - 1)
    weight = layer.weight * scale.view(shape)
    bias = torch.zeros(count, dtype=torch.float64) if layer.bias is None else layer.bias
    shifted = scale * (bias - mean)
    new_bias = shifted + beta
    if not (torch.isfinite(weight).all() and torch.isfinite(new_bias).all()):
        raise TargetError(f"{name}: folding it gives non-finite weights")
    kind = layer.kind
    try:
        # a folded layer has a bias, which needs a constant tap: a dense layer always has one, a
        # conv raises when no kernel position can carry the bias
        kind.bias_tap  # noqa: B018
    except ValueError as error:
        raise UnsupportedTargetError(f"{name}: the folded conv needs a bias: {error}") from None
    taps = math.sqrt(kind.taps)
    weight_error = _gamma(5) * taps * float(torch.linalg.vector_norm(weight)) * (1 + 1e-12)
    bias_error = _gamma(8) * float(torch.linalg.vector_norm(shifted.abs() + beta.abs()))
    previous_weight, previous_bias = layer.fold_error
    return replace(
        layer,
        weight=weight,
        bias=new_bias,
        fold_error=(
            weight_error + previous_weight * float(scale.abs().max()),
            bias_error * (1 + 1e-12) + previous_bias * float(scale.abs().max()),
        ),
    )


def _weight(module: nn.Module, name: str, what: str) -> torch.Tensor:
    from sslth.modules import effective_parameter

    value = effective_parameter(module, name).to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(value).all():
        raise TargetError(f"{what}: its {name} has NaN or Inf entries")
    return value
