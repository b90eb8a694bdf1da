"""Float32 tickets certified at the ε their float64 demos use (issue 24).

    python scripts/float32_certified.py --out runs/float32 [--which digits-mlp,784-500-10]

For each target, prunes with ``dtype="float32"`` at the demo's ε (digits: half the smallest test
margin, capped; 784-500-10: 0.01) and prints the certificate of the module the report refers to
(the sparse export, float64 accumulation) next to the rounding terms of the same masks run as the
dense float32 network (``sslth.certify(target, ticket.network)``, any summation order) and as the
sparse export with float32 accumulation. Saves each ticket (``<out>/<name>.pt``) for
``scripts/bench_export.py`` and writes ``<out>/float32.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import sslth
from sslth.experiments import digits, digits_cnn


def _digits_mlp():
    data = digits.load_data(0)
    target = digits.train_mlp(data, hidden=32, epochs=300, seed=0)
    with torch.no_grad():
        logits = target.double()(data.x_test.double())
    epsilon = digits.choose_epsilon(digits.smallest_margin(logits))
    return target, epsilon, data.radius, digits.DEFAULT_DENSITY, None


def _digits_cnn():
    data = digits_cnn.load_data(0)
    with digits_cnn.single_thread():
        target = digits_cnn.train_cnn(
            data,
            channels=digits_cnn.DEFAULT_CHANNELS,
            epochs=digits_cnn.DEFAULT_EPOCHS,
            seed=0,
            lr=digits_cnn.DEFAULT_LR,
        )
    with torch.no_grad():
        logits = target(digits_cnn.images(data.x_test).double())
    epsilon = digits.choose_epsilon(digits.smallest_margin(logits))
    shape = list(digits_cnn.INPUT_SHAPE)
    return target, epsilon, data.radius, digits_cnn.DEFAULT_DENSITY, shape


def _mlp_784():
    from sslth.config import random_target

    return random_target([784, 500, 10], bias=True, seed=0), 0.01, 1.0, 0.1, None


TARGETS = {"digits-mlp": _digits_mlp, "784-500-10": _mlp_784, "digits-cnn": _digits_cnn}


def measure(name: str, out: Path) -> dict:
    target, epsilon, radius, density, shape = TARGETS[name]()
    start = time.perf_counter()
    try:
        ticket = sslth.prune(
            target,
            epsilon,
            density,
            radius=radius,
            input_shape=shape,
            dtype="float32",
            seed=0,
            progress=False,
            device="cpu",
        )
        found = True
    except sslth.TicketNotFound as error:
        ticket, found = error.best, False
    seconds = time.perf_counter() - start
    ticket.save(out / f"{name}.pt")
    report = ticket.report
    sparse = sslth.certify(target, ticket.export(sparse=True), radius, input_shape=shape)
    fast = sslth.certify(
        target, ticket.export(sparse=True, accumulate="float32"), radius, input_shape=shape
    )
    dense = sslth.certify(target, ticket.network, radius, input_shape=shape)
    row = {
        "target": name,
        "epsilon": epsilon,
        "radius": radius,
        "found": found,
        "density": report.density,
        "exact": report.certified_error_exact,
        "rounding_sparse_float64_accumulation": sparse.rounding,
        "rounding_sparse_float32": fast.rounding,
        "rounding_dense_float32": dense.rounding,
        "certified": report.certified_error,
        "arithmetic": report.arithmetic,
        "empirical": report.empirical_error,
        "prune_seconds": seconds,
    }
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--which", default=",".join(TARGETS))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [measure(name, out) for name in args.which.split(",")]
    (out / "float32.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
