"""Speed and storage of the sparse export against the dense target, side by side in one run.

    python scripts/bench_export.py runs/float32/digits-mlp.pt [more tickets] [--batch 1000]

For each saved ticket (e.g. from ``scripts/float32_certified.py``), on one CPU thread: the
forward time of the dense target (float32), of the sparse export (float64 accumulation: what a
float32 ticket's report certifies; and float32 accumulation) and of the compact dense export,
at ``--batch`` and at batch 1, each as a ratio to the target's; the multiply-add floor (one per
kept hidden unit per input position and one per kept V weight per output position, over the
target's multiply-adds); and the storage: the sparse module's buffers, the kept weights, the
target's weights and a seed plus packed masks. Times are the thread's CPU time (best of a few
runs): ratios measured in one run are more robust than absolute times on a shared machine, and
the load (``os.getloadavg``) is printed with them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

import sslth
from sslth.sparse import kept_bytes, kept_weights, multiply_adds


def best_time(module, x: torch.Tensor, repeats: int) -> float:
    """Best of ``repeats`` forward passes (after one warm-up), in seconds of this thread's CPU
    time: on a machine shared by many processes, wall time charges a long forward pass for
    every time slice it waits, and a short one (the target's) for none."""
    with torch.no_grad():
        module(x)
        best = math.inf
        for _ in range(repeats):
            start = time.thread_time()
            module(x)
            best = min(best, time.thread_time() - start)
    return best


class DenseTarget(torch.nn.Module):
    """The target itself in float32 (its layers as ``F.linear`` / ``F.conv2d``), for timing."""

    def __init__(self, target) -> None:
        super().__init__()
        self.target = target
        self.weights = [layer.weight.float() for layer in target.layers]
        self.biases = [None if b.bias is None else b.bias.float() for b in target.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def layer(index: int, values: torch.Tensor) -> torch.Tensor:
            kind = self.target.layers[index].kind
            return kind.apply(values, self.weights[index], self.biases[index])

        return self.target.run(x, layer)


def target_multiply_adds(target) -> int:
    return sum(
        layer.d_out * layer.d_in * layer.kind.taps * layer.kind.positions for layer in target.layers
    )


def measure(path: str, batch: int, repeats: int) -> dict:
    ticket = sslth.load(path, samples=200)
    target = ticket.target
    dense = DenseTarget(target)
    modules = {"sparse_float64_accumulation": ticket.export(sparse=True)}
    if ticket.dtype == torch.float32:  # a float64 ticket accumulates in float64 only
        modules["sparse_float32"] = ticket.export(sparse=True, accumulate="float32")
    modules["compact_dense"] = ticket.export(compact=True)
    row: dict = {"ticket": path, "load_before": os.getloadavg()[0]}
    shape = tuple(target.input_shape)
    for size in (batch, 1):
        x = torch.randn(size, *shape, generator=torch.Generator().manual_seed(0))
        base = best_time(dense, x, repeats if size > 1 else 20 * repeats)
        row[f"target_ms_batch{size}"] = 1e3 * base
        for name, module in modules.items():
            # the compact dense export is the slow baseline: one timed pass at the large batch
            times = 1 if name == "compact_dense" and size > 1 else repeats
            given = x.to(ticket.dtype) if name == "compact_dense" else x  # a plain nn.Sequential
            seconds = best_time(module, given, times if size > 1 else 20 * repeats)
            row[f"{name}_ratio_batch{size}"] = seconds / base
    sparse = modules["sparse_float64_accumulation"]
    row["floor_ratio"] = multiply_adds(sparse) / target_multiply_adds(target)
    row["kept_weights"] = kept_weights(sparse)
    row["sparse_bytes"] = kept_bytes(sparse)
    row["bytes_per_kept_weight"] = kept_bytes(sparse) / max(kept_weights(sparse), 1)
    row["target_bytes_float32"] = 4 * sum(
        layer.weight.numel() + (0 if layer.bias is None else layer.bias.numel())
        for layer in target.layers
    )
    row["masks_packed_bytes"] = sum(
        (m.kept_neurons.numel() + m.second.numel() + 7) // 8 for m in ticket.masks
    )
    row["load_after"] = os.getloadavg()[0]
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tickets", nargs="+")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for path in args.tickets:
        rows.append(measure(path, args.batch, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return rows


if __name__ == "__main__":
    main()
