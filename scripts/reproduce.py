#!/usr/bin/env python
"""Reproduce the paper's theorems empirically.

    python scripts/reproduce.py {theorem2,theorem3,theorem4} --config configs/<name>.toml --out DIR

theorem2: fixed-size random subset sum (Theorem 2, and Theorem 5's lower bound); theorem3:
density against overparameterization for dense ReLU targets (Theorem 3, the paper's Figure 1);
theorem4: the same for convolutional targets (Theorem 4 with G = Z²). Each has a full config
(configs/theoremN.toml) and a quick one (configs/theoremN-quick.toml, run by the tests).

Writes CSV, PNG figures and summary.md into DIR; finished sweep points are cached under
DIR/points, so an interrupted run resumes where it stopped (``--cached-only`` reports the cached
points without measuring).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from sslth.experiments import EXPERIMENTS, ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=EXPERIMENTS)
    parser.add_argument("--config", required=True, help="TOML file (see configs/)")
    parser.add_argument("--out", required=True, help="output directory (created; resumable)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="measure nothing: report the points already cached in --out (a partial run)",
    )
    args = parser.parse_args(argv)
    module = importlib.import_module(f"sslth.experiments.{args.experiment}")
    try:
        config = load_config(args.config, module.Config)
    except (ConfigError, FileNotFoundError) as error:
        print(f"reproduce.py: {error}", file=sys.stderr)
        return 2
    module.run(config, args.out, progress=not args.no_progress, cached_only=args.cached_only)
    print(f"wrote {args.out}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
