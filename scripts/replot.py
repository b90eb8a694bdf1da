#!/usr/bin/env python
"""Redraw the reproduction figures from their CSVs, without rerunning any sweep.

    python scripts/replot.py [--csv docs/figures] [--out docs/figures] [theorem2] [theorem3]
                             [theorem4]

Reads ``theorem2_points.csv``, ``theorem3_points.csv`` and ``theorem4_points.csv`` (as
``scripts/reproduce.py`` writes them), rebuilds the records with their types, and calls the
experiments' own plot functions, so a change to a figure's design can be applied to the
committed results in seconds.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sslth.experiments import theorem2, theorem3, theorem4

ROOT = Path(__file__).resolve().parents[1]


def _bool(text: str) -> bool:
    if text not in ("True", "False"):
        raise ValueError(f"not a boolean: {text!r}")
    return text == "True"


def _ints(text: str) -> list[int]:
    # write_csv stores lists space-separated
    return [int(v) for v in text.split()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split()]


def _float(text: str) -> float:
    return float(text)  # "nan" (a point whose every instance hit the budget) parses too


THEOREM2_COLUMNS: dict[str, Callable[[str], Any]] = {
    "distribution": str,
    "target_range": str,
    "ratio": _float,
    "delta": _float,
    "n": int,
    "k": int,
    "instances": int,
    "seed": int,
    "solved": int,
    "infeasible": int,
    "budget_exhausted": int,
    "success": _float,
    "ci_low": _float,
    "ci_high": _float,
    "x": _float,
    "predicted": _float,
    "theorem5_counting": _bool,
    "seconds": _float,
}

# the ticket's columns both density sweeps write
TICKET_COLUMNS: dict[str, Callable[[str], Any]] = {
    "random_params": int,
    "target_params": int,
    "overparameterization": _float,
    "n": _ints,
    "k": _ints,
    "paper_shape": _float,
}

THEOREM3_COLUMNS: dict[str, Callable[[str], Any]] = {
    "width": int,
    "depth": int,
    "epsilon": _float,
    "seed": int,
    "density": _float,
    "found": _bool,
    "seconds": _float,
    "reason": str,
    "certified_error": _float,
    "achieved_density": _float,
    **TICKET_COLUMNS,
}

THEOREM4_COLUMNS: dict[str, Callable[[str], Any]] = {
    "channels": int,
    "input_size": int,
    "bias": _bool,
    "epsilon": _float,
    "seed": int,
    "density": _float,
    "found": _bool,
    "seconds": _float,
    "cpu_seconds": _float,
    "reason": str,
    "norm_power": _floats,
    "certified_error": _float,
    "empirical_error": _float,
    "achieved_density": _float,
    **TICKET_COLUMNS,
    "mean_n": _float,
}


def read_records(path: Path, columns: dict[str, Callable[[str], Any]]) -> list[dict[str, Any]]:
    """CSV rows as typed records; an empty cell (a value the run did not have) is left out,
    as it was absent from the record that was written."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    records = []
    for line, row in enumerate(rows, start=2):
        unknown = set(row) - set(columns)
        if unknown:
            raise ValueError(f"{path}:{line}: unknown columns {sorted(unknown)}")
        try:
            records.append({k: columns[k](v) for k, v in row.items() if v != ""})
        except ValueError as error:
            raise ValueError(f"{path}:{line}: {error}") from None
    return records


def _unique(records: list[dict[str, Any]], key: str) -> list:
    return sorted({r[key] for r in records})


def theorem2_config(records: list[dict[str, Any]]) -> theorem2.Config:
    """The sweep's settings as far as the figures need them, read off the records."""
    return theorem2.Config(
        distributions=[d for d in ("uniform", "product") if d in _unique(records, "distribution")],
        ratios=_unique(records, "ratio"),
        deltas=_unique(records, "delta"),
        target_ranges=[t for t in theorem2.TARGET_RANGES if t in _unique(records, "target_range")],
        instances=max(r["instances"] for r in records),
        max_n=max(r["n"] for r in records),
    )


def _config(cls, records: list[dict[str, Any]], **columns: str):
    """A sweep's config as far as its figure needs it: each field the column's distinct values."""
    return cls(**{name: _unique(records, column) for name, column in columns.items()})


def replot_theorem2(source: Path, out: Path) -> list[str]:
    records = read_records(source / "theorem2_points.csv", THEOREM2_COLUMNS)
    return theorem2._plot(records, out, theorem2_config(records))


def replot_theorem3(source: Path, out: Path) -> list[str]:
    records = read_records(source / "theorem3_points.csv", THEOREM3_COLUMNS)
    for r in records:
        if not math.isclose(
            r["paper_shape"],
            theorem3.paper_shape(r["width"], r["depth"], r["epsilon"], r["density"]),
            rel_tol=1e-5,
        ):
            raise ValueError("theorem3_points.csv: paper_shape does not match its settings")
    c_ratio, c_amp = theorem3.fit(records)
    return theorem3._plot(
        records,
        c_ratio,
        c_amp,
        out,
        _config(
            theorem3.Config,
            records,
            widths="width",
            depths="depth",
            epsilons="epsilon",
            seeds="seed",
            densities="density",
        ),
    )


def replot_theorem4(source: Path, out: Path) -> list[str]:
    records = read_records(source / "theorem4_points.csv", THEOREM4_COLUMNS)
    c_ratio, c_amp = theorem4.fit(records)
    return theorem4._plot(
        records,
        c_ratio,
        c_amp,
        out,
        _config(
            theorem4.Config,
            records,
            channels="channels",
            input_sizes="input_size",
            biases="bias",
            epsilons="epsilon",
            seeds="seed",
            densities="density",
        ),
    )


REPLOT = {"theorem2": replot_theorem2, "theorem3": replot_theorem3, "theorem4": replot_theorem4}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # no ``choices``: argparse checks an empty ``nargs="*"`` default against them and fails
    parser.add_argument("experiments", nargs="*", help=f"any of {', '.join(REPLOT)} (default: all)")
    parser.add_argument("--csv", type=Path, default=ROOT / "docs/figures", help="CSV folder")
    parser.add_argument("--out", type=Path, default=None, help="figure folder (default: --csv)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.experiments if name not in REPLOT]
    if unknown:
        parser.error(f"unknown experiment {unknown[0]!r}; choose from {', '.join(REPLOT)}")
    out = args.out or args.csv
    out.mkdir(parents=True, exist_ok=True)
    for name in args.experiments or list(REPLOT):
        for figure in REPLOT[name](args.csv, out):
            print(out / figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
