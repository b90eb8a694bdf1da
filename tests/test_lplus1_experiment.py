"""The l+1 against 2l comparison (sslth/experiments/lplus1.py) on its quick config."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sslth.experiments import load_config, lplus1

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    pytest.importorskip("matplotlib")
    config = load_config(ROOT / "configs/lplus1-quick.toml", lplus1.Config)
    out = tmp_path_factory.mktemp("lplus1")
    records = lplus1.run(config, out, progress=False)
    return config, out, records


@pytest.mark.slow
def test_quick_config_writes_its_table_points_and_figure(quick):
    config, out, records = quick
    assert (out / "lplus1_points.csv").is_file() and (out / "lplus1_vs_2l.png").is_file()
    summary = (out / "summary.md").read_text()
    assert "| l+1 | free |" in summary and "| 2l | 2 |" in summary
    for record in records:
        for key in ("2l", "lp1"):
            assert record[f"{key}_found"]
            assert record[f"{key}_certified_error"] <= config.epsilon
            assert record[f"{key}_density"] <= record["density"]
        # the quadratic overhead: at these widths l+1 needs more random weights than 2l
        assert record["lp1_overparameterization"] > record["2l_overparameterization"]


@pytest.mark.slow
def test_the_solver_agrees_with_enumeration(quick):
    _, out, _ = quick
    with open(out / "lplus1_subset_sum.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    for row in rows:
        # "auto" runs the complete search at n = 10: it fails exactly where no subset exists
        assert float(row["solver_failure_rate"]) == float(row["failure_rate"])
        assert float(row["mean_error"]) >= 0 and 0 <= float(row["failure_rate"]) <= 1
