"""Inputs of either float dtype, whatever a ticket module's dtype.

Every module a ticket hands out (``ticket(x)``, ``ticket.export()``, ``export(compact=True)``,
``export(sparse=True)``) takes a float32 or a float64 tensor. A float32 input to a float64
module is converted exactly (every float32 number is a float64 number). A float64 input to a
float32 module is converted when each of its values is a float32 number (so nothing changes)
and refused in one line otherwise: rounding it would run the module on another point than the
one given, and the certificate covers the float32 inputs of the ball.
"""

from __future__ import annotations

import torch
from torch import nn

from sslth.errors import InputError

FLOAT_DTYPES = (torch.float32, torch.float64)


def accept_input(x, dtype: torch.dtype, device=None) -> torch.Tensor:
    """``x`` in ``dtype`` (and on ``device`` when given), converted without changing a value.

    Args:
        x: the input, a float32 or float64 tensor.
        dtype: the module's dtype (float32 or float64; any other is returned as given).
        device: where the module's weights are (None: leave ``x`` where it is).

    Returns:
        ``x`` itself when it already has ``dtype`` (and device), else an exact copy.

    Raises:
        InputError: ``x`` is not a float32/float64 tensor, or a float64 input to a float32
            module holds a value float32 cannot represent (with what to do).
    """
    if not isinstance(x, torch.Tensor) or x.dtype not in FLOAT_DTYPES:
        kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(
            f"a ticket takes a float32 or float64 tensor, got {kind}: convert it with .float()"
        )
    converted = x.to(device=device, dtype=dtype) if dtype in FLOAT_DTYPES else x
    if x.dtype == torch.float64 and dtype == torch.float32:
        back = converted.to(device=x.device, dtype=torch.float64)
        changed = (back != x) & ~(torch.isnan(x) & torch.isnan(back))
        if bool(changed.any()):
            raise InputError(
                "a float64 input to a float32 ticket module has values float32 cannot represent "
                "exactly: pass x.float() (the certificate covers float32 inputs) or use a float64 "
                "ticket (dtype='float64')"
            )
    return converted


def module_dtype(module: nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    """(dtype, device) of a module's first floating parameter or buffer, (None, None) if none."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return None, None


class TicketSequential(nn.Sequential):
    """An ``nn.Sequential`` (what ``ticket.export()`` returns for a chain target) that takes
    float32 or float64 inputs whatever its dtype (:func:`accept_input`), after ``.float()`` or
    ``.double()`` too: the dtype is read from its weights at each call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype, device = module_dtype(self)
        return super().forward(accept_input(x, dtype, device) if dtype is not None else x)


__all__ = ["TicketSequential", "accept_input", "module_dtype"]
