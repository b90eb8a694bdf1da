"""Train a small ResNet on scikit-learn's digits and build a certified ticket for it.

    python scripts/digits_resnet_demo.py --out runs/digits_resnet [--density 0.1] [--seed 0]

The model is a module class (stem conv + BatchNorm, an identity block, a block with a 1×1
projection, global average pooling, a linear head), read by sslth's tracer with every BatchNorm
folded. Writes ``report.json`` (accuracies, largest logit deviation, certified error, ε,
density, n and k per layer, the full ticket report). The logic is
:mod:`sslth.experiments.digits_resnet`.
"""

from __future__ import annotations

import argparse

from sslth.experiments import digits_resnet


def main(argv: list[str] | None = None) -> digits_resnet.DigitsResNetResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--channels", type=int, default=digits_resnet.DEFAULT_CHANNELS)
    parser.add_argument("--epochs", type=int, default=digits_resnet.DEFAULT_EPOCHS)
    parser.add_argument("--density", type=float, default=digits_resnet.DEFAULT_DENSITY)
    parser.add_argument("--seed", type=int, default=0, help="data split, training and ticket")
    parser.add_argument("--cap", type=float, default=digits_resnet.EPSILON_CAP, help="largest ε")
    parser.add_argument("--device", help="device of the prune: cpu, cuda (default: cuda if any)")
    args = parser.parse_args(argv)
    result = digits_resnet.run(
        args.out,
        channels=args.channels,
        epochs=args.epochs,
        density=args.density,
        seed=args.seed,
        cap=args.cap,
        device=args.device,
        progress=True,
    )
    print(
        f"target accuracy {result.target_accuracy:.4f}, ticket accuracy "
        f"{result.ticket_accuracy:.4f} (predictions equal: {result.predictions_equal})\n"
        f"ε = {result.epsilon:.4g} (half the smallest test margin {result.smallest_test_margin:.4g}"
        f", capped at {args.cap:g}), radius {result.radius:.4g}\n"
        f"max logit deviation {result.max_logit_deviation:.4g} <= certified error "
        f"{result.certified_error:.4g} (empirical {result.empirical_error:.4g}); "
        f"density {result.density:.4g} (limit {result.density_limit:g})\n"
        f"n {result.n}, k {result.k}\n"
        "time: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
        + f"\nwrote {args.out}/report.json"
    )
    return result


if __name__ == "__main__":
    main()
