"""2-D convolutions: ``nn.Conv2d`` with zero padding and ``groups = 1``, Theorem 4 with G = Z².

The pair standing in for a conv K (c_out × c_in × kh × kw, stride s, padding p, dilation d) is a
1×1 conv U: c_in → 2n·c_in, a ReLU, and a conv V: 2n·c_in → c_out with K's kernel size, stride,
padding and dilation. After masking, hidden channel h reads one input channel j(h) with weight
a_h, and since σ(a_h x) = a_h σ(x) pointwise for a_h > 0 (|a_h| σ(−x) for a_h < 0) and the 1×1
conv commutes with the spatial sum, V * σ(U x) = A * σ(x) − B * σ(−x): every kernel entry and
sign is one subset-sum instance, exactly as for a dense layer with d_out · kh · kw rows.

A bias channel is the constant σ(c_h) at every pixel of the hidden map. Seen through V with
zero padding, it is constant at an output only through kernel positions that stay inside the
image at every output position (the *constant taps*); the bias instance picks through one of
them, the one nearest the kernel's centre, so the offset is exactly b_i everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from sslth.convnorm import conv_norm_bound, conv_output_shape
from sslth.errors import TargetError, UnsupportedTargetError
from sslth.kinds.base import LayerKind


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"expected an int or a pair, got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class Conv2d(LayerKind):
    """A conv layer's geometry on its input shape (channels are the weight's own)."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    in_hw: tuple[int, int] = (1, 1)

    name = "conv2d"
    convolution = True
    module_class = nn.Conv2d

    @classmethod
    def check_module(cls, module: nn.Module, position) -> None:
        name = f"layer {position} (Conv2d)"
        if module.groups != 1:
            raise UnsupportedTargetError(
                f"{name}: groups = {module.groups} is not supported (1 is)"
            )
        if module.padding_mode != "zeros":
            raise UnsupportedTargetError(
                f"{name}: padding_mode {module.padding_mode!r} is not supported ('zeros' is)"
            )

    @classmethod
    def read_module(
        cls, module: nn.Module, position, shape: tuple[int, ...]
    ) -> tuple[LayerKind, str, int]:
        name = f"layer {position} (Conv2d {module.in_channels}->{module.out_channels})"
        if len(shape) != 3 or shape[0] != module.in_channels:
            raise TargetError(
                f"{name}: expects (C={module.in_channels}, H, W) inputs but receives shape "
                f"{shape}; shapes do not chain (check input_shape)"
            )
        return cls._of_module(module, position, shape[1:]), name, 4

    @classmethod
    def _of_module(cls, module: nn.Module, position, in_hw: tuple[int, int]) -> Conv2d:
        name = f"layer {position} (Conv2d)"
        padding = module.padding
        if isinstance(padding, str):
            if padding == "valid":
                padding = (0, 0)
            else:  # 'same' with symmetric padding is the same as explicit padding
                total = [
                    d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)
                ]
                if any(t % 2 for t in total):
                    raise UnsupportedTargetError(
                        f"{name}: padding='same' with an even kernel pads asymmetrically; pad "
                        "explicitly"
                    )
                padding = tuple(t // 2 for t in total)
        try:
            return cls(module.kernel_size, module.stride, padding, module.dilation, in_hw)
        except ValueError as error:
            raise TargetError(f"{name}: {error}") from None

    def __post_init__(self) -> None:
        for name in ("kernel", "stride", "padding", "dilation", "in_hw"):
            object.__setattr__(self, name, _pair(getattr(self, name)))
        minimum = {"kernel": 1, "stride": 1, "padding": 0, "dilation": 1, "in_hw": 1}
        for name, low in minimum.items():
            if min(getattr(self, name)) < low:
                raise ValueError(f"conv {name} must be >= {low}, got {getattr(self, name)}")
        conv_output_shape(self.in_hw, self.kernel, self.stride, self.padding, self.dilation)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return self.kernel

    @property
    def out_hw(self) -> tuple[int, int]:
        return conv_output_shape(self.in_hw, self.kernel, self.stride, self.padding, self.dilation)

    @property
    def positions(self) -> int:
        height, width = self.out_hw
        return height * width

    @property
    def in_positions(self) -> int:
        return self.in_hw[0] * self.in_hw[1]

    def constant_taps(self) -> torch.Tensor:
        """(kh · kw,) bool: kernel positions inside the image at every output position."""
        inside = []
        for axis in range(2):
            size, k = self.in_hw[axis], self.kernel[axis]
            s, p, d = self.stride[axis], self.padding[axis], self.dilation[axis]
            last = self.out_hw[axis] - 1
            inside.append(
                torch.tensor(
                    [t * d - p >= 0 and last * s - p + t * d <= size - 1 for t in range(k)]
                )
            )
        return (inside[0][:, None] & inside[1][None, :]).reshape(-1)

    @property
    def bias_tap(self) -> int:
        taps = self.constant_taps().nonzero().squeeze(1)
        if taps.numel() == 0:
            raise ValueError(
                f"no kernel position of this conv (kernel {self.kernel}, padding "
                f"{self.padding}, dilation {self.dilation}) stays inside a {self.in_hw} input at "
                "every output position, so a bias cannot be carried exactly"
            )
        kh, kw = self.kernel
        centre = torch.tensor([(kh - 1) / 2, (kw - 1) / 2])
        positions = torch.stack([taps // kw, taps % kw], dim=1).to(torch.float64)
        distance = ((positions - centre) ** 2).sum(dim=1)
        return int(taps[int(distance.argmin())])

    def label(self, d_in: int, d_out: int) -> str:
        kh, kw = self.kernel
        return f"conv {d_in}->{d_out} {kh}x{kw}"

    def in_shape(self, channels: int) -> tuple[int, ...]:
        return (channels, *self.in_hw)

    def out_shape(self, channels: int) -> tuple[int, ...]:
        return (channels, *self.out_hw)

    def layer_module(self, d_in: int, d_out: int, has_bias: bool) -> nn.Module:
        return nn.Conv2d(
            d_in,
            d_out,
            self.kernel,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=has_bias,
        )

    def operator_norm(self, weight: torch.Tensor) -> float:
        return conv_norm_bound(weight, self.in_hw, self.stride, self.padding, self.dilation)

    def apply(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        images = x.reshape(x.shape[0], weight.shape[1], *self.in_hw)
        out = functional.conv2d(
            images,
            weight.to(device=x.device, dtype=x.dtype),
            None if bias is None else bias.to(device=x.device, dtype=x.dtype),
            self.stride,
            self.padding,
            self.dilation,
        )
        return out.reshape(x.shape[0], -1)

    def first_kind(self) -> LayerKind:
        return Conv2d((1, 1), in_hw=self.in_hw)

    def pair_modules(
        self, d_in: int, d_out: int, hidden: int, has_bias: bool
    ) -> tuple[nn.Module, nn.Module]:
        return nn.Conv2d(d_in, hidden, 1, bias=has_bias), self.layer_module(hidden, d_out, False)

    def module_problem(self, module: nn.Module, first: bool) -> str | None:
        expected = (
            ((1, 1), (1, 1), (0, 0), (1, 1))
            if first
            else (self.kernel, self.stride, self.padding, self.dilation)
        )
        actual = (module.kernel_size, module.stride, module.padding, module.dilation)
        if tuple(map(tuple, actual)) != expected:
            return f"has (kernel, stride, padding, dilation) {actual}, a ticket has {expected}"
        if module.groups != 1 or module.padding_mode != "zeros":
            return "uses groups or a padding mode a ticket does not"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "in_hw": list(self.in_hw),
        }
