"""Train a small CNN on scikit-learn's digits and build a certified ticket for it.

    python scripts/digits_cnn_demo.py --out runs/digits_cnn [--density 0.1] [--seed 0]

Writes ``report.json`` (accuracies, largest logit deviation, certified error, density, n and k
per layer, the full ticket report), and unless ``--no-figures``, ``logits.png`` and
``masks.png``. The logic is :mod:`sslth.experiments.digits_cnn`.
"""

from __future__ import annotations

from sslth.experiments import digits, digits_cnn


def main(argv: list[str] | None = None) -> digits_cnn.DigitsCNNResult:
    parser = digits.demo_parser(__doc__, epochs=digits_cnn.DEFAULT_EPOCHS, figures=True)
    args = parser.parse_args(argv)
    options = digits.demo_options(args)
    result = digits_cnn.run(args.out, figures=not args.no_figures, **options)
    print(digits.demo_summary(result, args.out, args.cap, not args.no_figures))
    return result


if __name__ == "__main__":
    main()
