"""Layer kinds (see :mod:`sslth.kinds.base`): the table of kinds and their descriptions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from sslth.errors import NotATicketError
from sslth.kinds.base import LayerKind
from sslth.kinds.conv import Conv2d
from sslth.kinds.dense import DENSE, Dense, spectral_norm

KINDS: dict[str, type[LayerKind]] = {Dense.name: Dense, Conv2d.name: Conv2d}


# the nn module classes a target layer can be, and the kind each one is read as
LAYER_MODULES: tuple[type[nn.Module], ...] = tuple(kind.module_class for kind in KINDS.values())


def kind_of_module(module: nn.Module) -> type[LayerKind]:
    """The kind class whose target layers ``module`` is one of (``module`` is an instance of
    :data:`LAYER_MODULES`)."""
    return next(kind for kind in KINDS.values() if isinstance(module, kind.module_class))


def has_convolution(kinds: Iterable[LayerKind]) -> bool:
    """Whether any of ``kinds`` is a convolution (:attr:`LayerKind.convolution`)."""
    return any(kind.convolution for kind in kinds)


def kind_from_dict(data: Any) -> LayerKind:
    """The kind a :meth:`LayerKind.to_dict` describes; :class:`NotATicketError` otherwise."""
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        raise NotATicketError(f"unknown layer kind {data!r}")
    fields = {key: value for key, value in data.items() if key != "kind"}
    try:
        return KINDS[data["kind"]](**fields)
    except (TypeError, ValueError) as error:
        raise NotATicketError(f"bad layer kind {data!r}: {error}") from None


__all__ = [
    "DENSE",
    "KINDS",
    "LAYER_MODULES",
    "Conv2d",
    "Dense",
    "LayerKind",
    "has_convolution",
    "kind_from_dict",
    "kind_of_module",
    "spectral_norm",
]
