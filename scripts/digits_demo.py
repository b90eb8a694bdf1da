"""Train a small MLP on scikit-learn's digits and build a certified ticket for it (issue 6).

    python scripts/digits_demo.py --out runs/digits [--hidden 32] [--density 0.3] [--seed 0]

Writes ``report.json`` (accuracies, largest logit deviation, certified error, density, the full
ticket report), and unless ``--no-figures``, ``logits.png`` and ``masks.png``. The logic is
:mod:`sslth.experiments.digits`.
"""

from __future__ import annotations

from sslth.experiments import digits


def main(argv: list[str] | None = None) -> digits.DigitsResult:
    parser = digits.demo_parser(__doc__, epochs=300, figures=True)
    parser.add_argument("--hidden", type=int, default=32)
    args = parser.parse_args(argv)
    options = digits.demo_options(args)
    result = digits.run(args.out, hidden=args.hidden, figures=not args.no_figures, **options)
    print(digits.demo_summary(result, args.out, args.cap, not args.no_figures))
    return result


if __name__ == "__main__":
    main()
