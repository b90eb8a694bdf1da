"""Which device a prune runs on, and how many CPU threads it uses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

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


def available_cores() -> int:
    """CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_workers(device: torch.device) -> int:
    """Worker threads a prune uses when the caller gives none: the CPU cores on the CPU; one on
    CUDA, where the chunks are already as large as the device's memory allows and more threads
    only contend for the one stream (the issue's H200 profile: 9.6 s with one thread, 10.3 s
    with 4, 13.7 s with 16)."""
    return 1 if device.type == "cuda" else available_cores()


@contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread pool at ``count`` threads, then restore it.

    sslth's work is many small tensor operations: with several intra-op threads each one waits
    for every thread, and on a busy machine a descheduled thread stalls them all (a prune that
    took 4.9 s alone took 36.6 s beside a 2-thread PyTorch process, 6.6 s with one thread). It
    parallelizes over independent groups of instances instead (``PruneOptions.threads``).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
