"""A compiled CPU kernel for a sparse pair (``ticket.export(sparse=True)``), built on first use.

Torch has no kernel that multiplies a sparse matrix of random structure at anything near a
dense GEMM's speed, and the dense-block layout of :class:`~sslth.sparse.SparsePair` multiplies
the zeros of its blocks (about n/k times the kept terms), in float64 at half float32's speed.
This kernel runs a pair on its kept terms only. For a tile of ``TILE`` inputs at a time, each
kept unit's hidden values ``σ(a_h · x_j)`` are formed once (per input position, for a conv) and
each kept V entry of the unit adds ``v · h`` to its output (for a conv, at every output position
its kernel tap reaches), ``TILE`` inputs per vector operation, in the accumulation type; each
output is rounded once to the storage type at the end.

**Its arithmetic is the one the sparse certificate assumes** (docs/design.md §4b): with float32
storage and float64 accumulation the gather-scale is a product of two float32 numbers in
float64 (exact), and each output is a float64 sum of its kept terms ``v · h`` (fused
multiply-adds or not: a fused one only drops a rounding) in an order the certificate never
relies on, then one rounding to float32. With float32 accumulation the hidden value is
``σ(fl32(a · x))`` and the sum runs in float32; a float64 module runs everything in float64.

The source (``sslth/sparse_pair.c``, C99 with GNU vector types) is compiled by the system's C
compiler (``$CC``, else ``cc``) into a private temporary directory, once per process, loaded
with :mod:`ctypes` and its files removed (nothing another process could replace): no Python
dependency. Without a compiler, on CUDA, or with ``SSLTH_SPARSE_KERNEL=0``, a pair runs its
torch layout (:meth:`~sslth.sparse.SparsePair.forward_in`) under the same certificate. The
kernel checks every index in the buffers before it reads one: a module whose buffers point
outside its shapes is refused, never read out of bounds. It runs on one thread.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

TILE = 32  # inputs per tile (as in sparse_pair.c): one vector operation covers a tile

ROWS_FROM = 64  # a dense pair on this many inputs or more runs the row-grouped layout
SUPER = 128  # inputs per super-tile of the row-grouped layout (as in sparse_pair.c)
_SOURCE = Path(__file__).with_name("sparse_pair.c")

_LIBRARY: ctypes.CDLL | None = None
_STATUS = "not built yet"


def _compile() -> ctypes.CDLL:
    """The kernel, compiled into a fresh private directory that is removed once it is loaded
    (the loaded library stays mapped); raises on any failure."""
    directory = tempfile.mkdtemp(prefix="sslth-kernel-")
    try:
        source, library = Path(directory, "sparse_pair.c"), Path(directory, "sparse_pair.so")
        source.write_text(_SOURCE.read_text())
        compiler = os.environ.get("CC", "cc")
        # contracting v * h + acc into a fused multiply-add only drops a rounding (the
        # certificate's bound covers the unfused sum); nothing else that changes values is
        # enabled (no -ffast-math: no reassociation, no flushing of subnormals)
        base = [compiler, "-std=gnu99", "-O3", "-ffp-contract=fast", "-fPIC", "-shared"]
        error = "failed"
        for extra in (["-march=native"], []):  # native vector units, else the portable baseline
            command = [*base, *extra, str(source), "-o", str(library)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                return ctypes.CDLL(str(library))
            error = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise OSError(f"{compiler} failed: {error}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def sparse_kernel() -> ctypes.CDLL | None:
    """The compiled kernel, or None (no compiler, or ``SSLTH_SPARSE_KERNEL=0``): the caller
    then runs the torch layout. Compiled once per process."""
    global _LIBRARY, _STATUS
    if os.environ.get("SSLTH_SPARSE_KERNEL", "1") == "0":
        return None
    if _LIBRARY is None and _STATUS == "not built yet":
        try:
            _LIBRARY = _compile()
            _STATUS = "compiled"
        except (OSError, subprocess.SubprocessError) as error:
            _STATUS = f"unavailable ({error})"
    return _LIBRARY


def kernel_status() -> str:
    """Whether the kernel is in use, and why not when it is not."""
    if os.environ.get("SSLTH_SPARSE_KERNEL", "1") == "0":
        return "disabled (SSLTH_SPARSE_KERNEL=0)"
    sparse_kernel()
    return _STATUS


_TYPES = {torch.float32: "f32", torch.float64: "f64"}


def _pointer(tensor: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(tensor.data_ptr())


def run_kernel(library: ctypes.CDLL, pair, x: torch.Tensor, accumulate: torch.dtype):
    """``pair`` on ``x`` (the module's dtype, on the CPU) by the kernel, in the module's dtype.

    Raises:
        ValueError: the pair's buffers index outside its shapes (returned as a code by the
            kernel before it reads anything), or memory ran out.
    """
    storage = pair.values.dtype
    name = f"{_TYPES[storage]}_{_TYPES[accumulate]}"
    x = x.contiguous()
    buffers = [pair.inputs, pair.scales, pair.starts, pair.rows, pair.values]
    inputs, scales, starts, rows, values = [b.contiguous() for b in buffers]
    shape = (pair.d_in, *pair.kind.in_hw) if x.dim() == 4 else (pair.d_in,)
    sizes_agree = (
        starts.numel() == scales.numel() + 1
        and inputs.numel() <= scales.numel()
        and rows.numel() == values.numel()
        and (inputs.dtype, starts.dtype, rows.dtype) == (torch.int32,) * 3
        and scales.dtype == storage == x.dtype
        and tuple(x.shape[1:]) == shape
    )
    if not sizes_agree:
        raise ValueError("a sparse pair's buffers or its input do not have the sizes it needs")
    count = ctypes.c_int64
    tail = [
        _pointer(inputs),
        count(inputs.numel()),
        _pointer(scales),
        count(scales.numel()),
        _pointer(starts),
        _pointer(rows),
        _pointer(values),
        count(values.numel()),
    ]
    n = x.shape[0]
    if x.dim() == 2:
        out = torch.empty(n, pair.d_out, dtype=storage)
        # transposed, (d_in, pitch): a unit's inputs for a tile are contiguous; the row-grouped
        # layout reads whole super-tiles, so its pitch is a multiple of SUPER, zeros after n
        rows_layout = n >= ROWS_FROM
        pitch = -(-n // SUPER) * SUPER if rows_layout else n
        transposed = x.new_zeros(pair.d_in, pitch)
        transposed[:, :n] = x.T
        shapes = [count(pair.d_in), count(pair.d_out), *tail, _pointer(out)]
        if rows_layout:
            code = library["rows_" + name](_pointer(transposed), count(n), count(pitch), *shapes)
        else:  # a tile of one vector when the inputs fit in one
            layout = "one_" if n <= 32 // accumulate.itemsize else "dense_"
            code = library[layout + name](_pointer(transposed), count(n), *shapes)
    else:
        kind = pair.kind
        out = torch.empty(n, pair.d_out, *kind.out_hw, dtype=storage)
        geometry = torch.tensor(
            [*kind.in_hw, *kind.out_hw, *kind.kernel, *kind.stride, *kind.padding, *kind.dilation],
            dtype=torch.int64,
        )
        code = library["conv_" + name](
            _pointer(x),
            count(n),
            count(pair.d_in),
            count(pair.d_out),
            _pointer(geometry),
            *tail,
            _pointer(out),
        )
    if code == 1:
        raise ValueError("a sparse pair's buffers index outside its shapes")
    if code:
        raise MemoryError("the sparse kernel could not allocate its accumulators")
    return out


__all__ = ["TILE", "kernel_status", "run_kernel", "sparse_kernel"]
