"""Run a soundness sweep whole: every random target of one of the suite's attack files, of which
the suite itself attacks only a sample that covers each branch (docs/testing.md).

    python scripts/attack_sweep.py soundness          # tests/test_soundness.py: 200 targets
    python scripts/attack_sweep.py lplus1             # tests/test_lplus1_soundness.py: 100
    python scripts/attack_sweep.py sparse             # tests/test_sparse_soundness.py: 100
    python scripts/attack_sweep.py graph              # tests/test_graph.py: 50 graph targets
    python scripts/attack_sweep.py soundness --count 20 --json out.json

Each case's outcomes (what was attacked, the largest gap found, the certified bound) are printed
as they finish; the summary per kind of comparison follows (modules attacked, violations, worst
and median observed/certified; docs/reliability.md records the last run). Exit status 1 if any
attack went above its bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.soundness_harness import summary  # noqa: E402

SWEEPS = {
    "soundness": "tests.test_soundness",
    "lplus1": "tests.test_lplus1_soundness",
    "sparse": "tests.test_sparse_soundness",
    "graph": "tests.test_graph",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", choices=sorted(SWEEPS))
    parser.add_argument("--count", type=int, help="the first COUNT cases (default: all)")
    parser.add_argument("--json", type=Path, help="write every outcome and the summary here")
    args = parser.parse_args(argv)
    module = importlib.import_module(SWEEPS[args.sweep])
    count = module.COUNT if args.count is None else min(args.count, module.COUNT)
    torch.set_num_threads(1)
    started, rows = time.perf_counter(), []
    for index in range(count):
        rows.append(module.run_case(index))
        described = "skipped" if rows[-1] is None else [dataclasses.asdict(o) for o in rows[-1]]
        print(json.dumps({"index": index, "outcomes": described}), flush=True)
    result = summary(rows) | {"sweep": args.sweep, "seconds": time.perf_counter() - started}
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": result, "rows": rows}, default=_plain) + "\n")
    return int(any(o.violated for row in rows if row is not None for o in row))


def _plain(value):
    return dataclasses.asdict(value)


if __name__ == "__main__":
    sys.exit(main())
