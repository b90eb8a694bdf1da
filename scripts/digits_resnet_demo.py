"""Train a small ResNet on scikit-learn's digits and build a certified ticket for it.

    python scripts/digits_resnet_demo.py --out runs/digits_resnet [--density 0.1] [--seed 0]

The model is a module class (stem conv + BatchNorm, an identity block, a block with a 1×1
projection, global average pooling, a linear head), read by sslth's tracer with every BatchNorm
folded. Writes ``report.json`` (accuracies, largest logit deviation, certified error, ε,
density, n and k per layer, the full ticket report). The logic is
:mod:`sslth.experiments.digits_resnet`.
"""

from __future__ import annotations

from sslth.experiments import digits, digits_resnet


def main(argv: list[str] | None = None) -> digits_resnet.DigitsResNetResult:
    parser = digits.demo_parser(__doc__, epochs=digits_resnet.DEFAULT_EPOCHS, figures=False)
    parser.add_argument("--channels", type=int, default=digits_resnet.DEFAULT_CHANNELS)
    args = parser.parse_args(argv)
    options = digits.demo_options(args)
    result = digits_resnet.run(args.out, channels=args.channels, **options)
    print(digits.demo_summary(result, args.out, args.cap, figures=False))
    prune_steps = ", ".join(f"{k} {v:.1f}s" for k, v in result.report["timings"].items())
    print(f"prune steps: {prune_steps}; load average {result.load_average}")
    return result


if __name__ == "__main__":
    main()
