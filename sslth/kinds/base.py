"""The layer-kind seam: what one kind of target layer (dense, conv, …) supplies.

The search, the subset-sum layout, the masks and the certificate recursion are written once, on a
*matrix view* of every layer: a target weight of shape (d_out, d_in, *kernel) is seen as the
(d_out · taps) × d_in matrix whose row (i, t) holds kernel position t of output i, and the random
pair's second layer V, of shape (d_out, hidden, *kernel), as the (d_out · taps) × hidden matrix
of the same rows. Every entry of the first matrix is then one subset-sum instance over the hidden
neurons of its input's block, whatever the kind (docs/design.md, "Layer kinds").

A kind supplies only what differs: the kernel's shape, which kernel position carries the bias,
how many output positions share one bias value, an upper bound on the operator norm of a weight
of its shape, the layer's forward map on flattened inputs, its label and per-example shapes, the
``nn`` module of a target layer of the kind, and the two ``nn`` modules of a pair. Nothing
outside :mod:`sslth.kinds` asks which kind a layer is.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn


class LayerKind(ABC):
    """One kind of affine layer and its geometry; immutable and hashable (a dataclass)."""

    name: ClassVar[str] = ""
    # whether the layer is a convolution: the one spelling of "has a conv", which decides how
    # the module's sums round (:mod:`sslth.rounding`) and whether a target needs input_shape
    convolution: ClassVar[bool] = False
    module_class: ClassVar[type[nn.Module]] = nn.Linear  # the nn module a target layer is

    @classmethod
    def check_module(cls, module: nn.Module, position) -> None:
        """Refuse (one line) options of a target's ``module`` the kind cannot take; ``position``
        names it in messages."""
        return None  # a dense layer's nn.Linear has no such options

    @classmethod
    @abstractmethod
    def read_module(
        cls, module: nn.Module, position, shape: tuple[int, ...]
    ) -> tuple[LayerKind, str, int]:
        """The kind of a target's layer ``module`` that receives examples of ``shape``.

        Returns:
            (kind, the layer's name for messages, the dimension count of its weight).

        Raises:
            TargetError: the shapes do not chain (or a geometry the kind cannot take).
        """

    @property
    @abstractmethod
    def kernel_shape(self) -> tuple[int, ...]:
        """Trailing dimensions of the weight after (d_out, d_in): () for a dense layer."""

    def label(self, d_in: int, d_out: int) -> str:
        """A short description of a layer of this kind, e.g. ``8->4`` (tables, messages)."""
        return f"{d_in}->{d_out}"

    def in_shape(self, channels: int) -> tuple[int, ...]:
        """Per-example input shape of a layer reading ``channels`` channels: (d_in,) dense."""
        return (channels,)

    def out_shape(self, channels: int) -> tuple[int, ...]:
        """Per-example output shape of a layer writing ``channels`` channels."""
        return (channels,)

    def layer_module(self, d_in: int, d_out: int, has_bias: bool) -> nn.Module:
        """An ``nn`` module computing a layer of this kind, weights uninitialised."""
        return nn.Linear(d_in, d_out, bias=has_bias)

    @property
    def taps(self) -> int:
        """Kernel positions: rows of the matrix view per output."""
        return math.prod(self.kernel_shape)

    @property
    def bias_tap(self) -> int:
        """The kernel position through which a pair's bias block reaches the output."""
        return 0

    @property
    def positions(self) -> int:
        """Output positions that each add the same bias value (1 for a dense layer)."""
        return 1

    @property
    def in_positions(self) -> int:
        """Input positions that each hold one value per channel (1 for a dense layer)."""
        return 1

    def constant_taps(self) -> torch.Tensor:
        """(taps,) bool: kernel positions through which a constant hidden channel reaches
        every output position unchanged (all of them for a dense layer)."""
        return torch.ones(self.taps, dtype=torch.bool)

    def module_types(self) -> tuple[type, ...]:
        """The ``nn`` module class of both layers of a pair."""
        return (self.module_class,)

    def module_problem(self, module: nn.Module, first: bool) -> str | None:
        """Why ``module`` is not the first (or second) layer of this kind's pair, beyond its
        class and channel counts (None when it is)."""
        return None

    def to_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """(d_out, width, *kernel) → the (d_out · taps, width) matrix view, row (i, t) holding
        kernel position t of output i (a view for a dense layer)."""
        d_out, width = tensor.shape[:2]
        if self.taps == 1:
            return tensor.reshape(d_out, width)
        return tensor.reshape(d_out, width, self.taps).transpose(1, 2).reshape(-1, width)

    def from_rows(self, matrix: torch.Tensor, d_out: int) -> torch.Tensor:
        """Inverse of :meth:`to_rows`: (d_out · taps, width) → (d_out, width, *kernel)."""
        width = matrix.shape[1]
        if self.taps == 1:
            return matrix.reshape(d_out, width, *self.kernel_shape)
        return (
            matrix.reshape(d_out, self.taps, width)
            .transpose(1, 2)
            .reshape(d_out, width, *self.kernel_shape)
        )

    @abstractmethod
    def operator_norm(self, weight: torch.Tensor) -> float:
        """An upper bound on the ℓ2 operator norm of the linear map with this weight.

        Args:
            weight: (d_out, d_in', *kernel_shape), any d_in' (the certificate passes the
                stacked error weight [A − W, W − B] with d_in' = 2 d_in).

        Returns:
            The bound, as a float.
        """

    @abstractmethod
    def apply(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """The layer on a batch of flattened inputs: (N, d_in · in_positions) → (N, d_out ·
        positions), in the dtype of ``x``."""

    def first_kind(self) -> LayerKind:
        """The kind of a pair's first layer U (a dense layer's own; a conv's is 1×1)."""
        return self

    @abstractmethod
    def pair_modules(
        self,
        d_in: int,
        d_out: int,
        hidden: int,
        has_bias: bool,
    ) -> tuple[nn.Module, nn.Module]:
        """The two ``nn`` modules of a random pair, weights uninitialised: d_in → hidden (with
        a bias if ``has_bias``) and hidden → d_out (never a bias)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, read back by :func:`sslth.kinds.kind_from_dict`."""
