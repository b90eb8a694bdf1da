"""Train a small MLP on scikit-learn's digits and build a certified ticket for it (issue 6).

    python scripts/digits_demo.py --out runs/digits [--hidden 32] [--density 0.3] [--seed 0]

Writes ``report.json`` (accuracies, largest logit deviation, certified error, density, the full
ticket report), and unless ``--no-figures``, ``logits.png`` and ``masks.png``. The logic is
:mod:`sslth.experiments.digits`.
"""

from __future__ import annotations

import argparse

from sslth.experiments import digits


def main(argv: list[str] | None = None) -> digits.DigitsResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--density", type=float, default=digits.DEFAULT_DENSITY)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cap", type=float, default=digits.EPSILON_CAP, help="largest ε")
    parser.add_argument("--no-figures", action="store_true", help="write report.json only")
    parser.add_argument("--device", default=None, help="where to prune (default: cuda if any)")
    args = parser.parse_args(argv)
    result = digits.run(
        args.out,
        hidden=args.hidden,
        epochs=args.epochs,
        density=args.density,
        seed=args.seed,
        cap=args.cap,
        figures=not args.no_figures,
        progress=True,
        device=args.device,
    )
    print(
        f"target accuracy {result.target_accuracy:.4f}, ticket accuracy "
        f"{result.ticket_accuracy:.4f} (predictions equal: {result.predictions_equal})\n"
        f"ε = {result.epsilon:.4g} (half the smallest test margin {result.smallest_test_margin:.4g}"
        f", capped at {args.cap:g}), radius {result.radius:.4g}\n"
        f"max logit deviation {result.max_logit_deviation:.4g} <= certified error "
        f"{result.certified_error:.4g}; density {result.density:.4g}\n"
        f"time: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
        + f"\nwrote {args.out}/report.json"
        + ("" if args.no_figures else ", logits.png, masks.png")
    )
    return result


if __name__ == "__main__":
    main()
