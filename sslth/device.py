"""Which device a prune runs on."""

from __future__ import annotations

import torch

from sslth.errors import ConfigError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device`` sslth can compute on (None: CUDA if any, else CPU).

    Raises:
        ConfigError: a device string torch does not know, a device type sslth does not run
            on (only ``cpu`` and ``cuda``), or CUDA asked for where there is none.
    """
    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device {device!r} is not a torch device ({error})") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {str(resolved)!r}: sslth computes on 'cpu' or 'cuda' only")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(resolved)!r} was asked for but CUDA is not available")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {str(resolved)!r}: only {torch.cuda.device_count()} CUDA device(s)"
            )
    return resolved
