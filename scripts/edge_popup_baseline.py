"""Does training find the ticket? Edge-popup against sslth's certified ticket on the same random
network, at the same density (issue 21).

    python scripts/edge_popup_baseline.py --out runs/edge_popup [--steps 300] [--quick]

Writes ``report.json``: test accuracies of the target, sslth's ticket and edge-popup's; the sup
errors (sslth's certified bound, and for both tickets the largest error the same gradient ascent
finds); the density; the overlap of the masks; the training time; and the planted variant
(edge-popup trained to match the target's outputs on the ball). The logic is
:mod:`sslth.experiments.edge_popup`.
"""

from __future__ import annotations

import argparse

from sslth.experiments import edge_popup


def main(argv: list[str] | None = None) -> edge_popup.EdgePopupResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300, help="edge-popup SGD steps")
    parser.add_argument("--quick", action="store_true", help="a small target, a few steps")
    args = parser.parse_args(argv)
    settings = dict(hidden=args.hidden, density=args.density, seed=args.seed, steps=args.steps)
    if args.quick:
        settings.update(hidden=6, epochs=60, density=0.3, steps=10, samples=200, epsilon=0.2)
    result = edge_popup.run(args.out, **settings)
    sup = result.sup_error
    print(
        f"accuracy: target {result.target_accuracy:.4f}, sslth ticket "
        f"{result.sslth_ticket_accuracy:.4f}, edge-popup {result.edge_popup_accuracy:.4f}\n"
        f"sup error (ε = {result.epsilon:.4g}): sslth certified {sup['sslth_certified']:.4g} "
        f"(ascent {sup['sslth_ascent']:.4g}), edge-popup ascent {sup['edge_popup_ascent']:.4g}\n"
        f"density {result.density:.4g}, mask overlap {result.mask_overlap:.3f}, trained in "
        f"{result.train_seconds:.1f}s\nplanted: sup error {result.planted['sup_error_ascent']:.4g}"
        f" (within ε: {result.planted['within_epsilon']})\nwrote {args.out}/report.json"
    )
    return result


if __name__ == "__main__":
    main()
