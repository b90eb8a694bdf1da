"""Layer kinds (see :mod:`sslth.kinds.base`): the table of kinds and their descriptions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sslth.errors import NotATicketError
from sslth.kinds.base import LayerKind
from sslth.kinds.conv import Conv2d
from sslth.kinds.dense import DENSE, Dense, spectral_norm

KINDS: dict[str, type[LayerKind]] = {Dense.name: Dense, Conv2d.name: Conv2d}


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
    "Conv2d",
    "Dense",
    "LayerKind",
    "has_convolution",
    "kind_from_dict",
    "spectral_norm",
]
