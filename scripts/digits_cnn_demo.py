"""Train a small CNN on scikit-learn's digits and build a certified ticket for it.

    python scripts/digits_cnn_demo.py --out runs/digits_cnn [--density 0.1] [--seed 0]

Writes ``report.json`` (accuracies, largest logit deviation, certified error, density, n and k
per layer, the full ticket report), and unless ``--no-figures``, ``logits.png`` and
``masks.png``. The logic is :mod:`sslth.experiments.digits_cnn`.
"""

from __future__ import annotations

import argparse

from sslth.experiments import digits_cnn


def main(argv: list[str] | None = None) -> digits_cnn.DigitsCNNResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--epochs", type=int, default=digits_cnn.DEFAULT_EPOCHS)
    parser.add_argument("--density", type=float, default=digits_cnn.DEFAULT_DENSITY)
    parser.add_argument("--seed", type=int, default=0, help="data split, training and ticket")
    parser.add_argument("--cap", type=float, default=digits_cnn.EPSILON_CAP, help="largest ε")
    parser.add_argument("--device", help="device of the prune: cpu, cuda (default: cuda if any)")
    parser.add_argument("--no-figures", action="store_true", help="write report.json only")
    args = parser.parse_args(argv)
    figures = not args.no_figures
    result = digits_cnn.run(
        args.out,
        epochs=args.epochs,
        density=args.density,
        seed=args.seed,
        cap=args.cap,
        device=args.device,
        figures=figures,
        progress=True,
    )
    written = ["report.json"] + (["logits.png", "masks.png"] if figures else [])
    print(
        f"target accuracy {result.target_accuracy:.4f}, ticket accuracy "
        f"{result.ticket_accuracy:.4f} (predictions equal: {result.predictions_equal}; "
        f"float32 ticket {result.ticket_accuracy_float32:.4f})\n"
        f"ε = {result.epsilon:.4g} (half the smallest test margin {result.smallest_test_margin:.4g}"
        f", capped at {args.cap:g}), radius {result.radius:.4g}\n"
        f"max logit deviation {result.max_logit_deviation:.4g} <= certified error "
        f"{result.certified_error:.4g} (empirical {result.empirical_error:.4g}); "
        f"density {result.density:.4g} (limit {result.density_limit:g})\n"
        f"n {result.n}, k {result.k}\n"
        "time: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
        + f"\nwrote {', '.join(f'{args.out}/{name}' for name in written)}"
    )
    return result


if __name__ == "__main__":
    main()
