"""Benchmark ``sslth.prune`` at the scale of the published experiment (issue 6).

    python scripts/bench_prune.py --target 784-500-10 [--device cpu] [--epsilon 0.01]
                                  [--density 0.1] [--seed 0]

The target is random: each layer is a Gaussian matrix divided by its spectral norm (norm 1, as
the theorem assumes), without biases. Prints the wall time of each step, peak host memory
(``ru_maxrss``; and ``torch.cuda.max_memory_allocated`` on CUDA), the random network's size m,
the density and the certified error.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import torch

import sslth
from sslth.config import random_target
from sslth.device import resolve_device


def peak_host_bytes() -> int:
    # ru_maxrss is in KiB on Linux and in bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="784-500-10", help="layer sizes, e.g. 784-500-10")
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: cuda if any)")
    parser.add_argument("--epsilon", type=float, default=0.01)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-network", action="store_true", help="skip building the dense masked network"
    )
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.target.split("-")]
    # spectral norm 1 per layer (as the theorem assumes), no biases
    target = random_target(sizes, seed=args.seed)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    ticket = sslth.prune(
        target, args.epsilon, args.density, seed=args.seed, device=device, progress=False
    )
    wall = time.perf_counter() - start
    peak_prune = peak_host_bytes()
    report = ticket.report
    network_s = None
    if not args.no_network:
        # prune never builds the dense network; a user who asks for it pays this once
        t0 = time.perf_counter()
        ticket.network  # noqa: B018
        network_s = time.perf_counter() - t0
    figures = {
        "target": args.target,
        "target_params": report.target_params,
        "epsilon": args.epsilon,
        "density_limit": args.density,
        "device": str(device),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "wall_s": wall,
        "steps_s": dict(report.timings),
        "peak_host_gib_prune": peak_prune / 1024**3,
        "network_s": network_s,
        "peak_host_gib": peak_host_bytes() / 1024**3,
        "peak_gpu_gib": (
            torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None
        ),
        "m": report.random_params,
        "n": report.n,
        "k": report.k,
        "density": report.density,
        "certified_error": report.certified_error,
        "empirical_error": report.empirical_error,
    }
    print(
        f"target {args.target} ({report.target_params:,} weights), ε = {args.epsilon:g}, "
        f"density <= {args.density:g}, device {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    for name, seconds in report.timings.items():
        print(f"  {name:<12} {seconds:8.2f} s")
    print(f"  {'total':<12} {wall:8.2f} s   (sslth.prune, end to end)")
    if network_s is not None:
        print(f"  {'network':<12} {network_s:8.2f} s   (ticket.network built on demand)")
    print(
        f"peak host memory {figures['peak_host_gib_prune']:.2f} GiB in prune, "
        f"{figures['peak_host_gib']:.2f} GiB with the network"
        + (
            f", peak GPU memory {figures['peak_gpu_gib']:.2f} GiB"
            if figures["peak_gpu_gib"] is not None
            else ""
        )
    )
    print(f"m = {report.random_params:,} random weights (n = {report.n}, k = {report.k})")
    print(
        f"density {report.density:.4g}, certified error {report.certified_error:.4g}, "
        f"empirical error {report.empirical_error:.4g}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    return figures


if __name__ == "__main__":
    main()
