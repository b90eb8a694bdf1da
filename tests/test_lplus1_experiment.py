"""The l+1 against 2l comparison (sslth/experiments/lplus1.py) on its quick config."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sslth.experiments import load_config, lplus1, lplus1_fit

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
    assert "c in m/m_t" in summary and "crossover" in summary
    assert len(records) == 2 * len(config.widths)
    for record in records:
        assert record["planned"] and record["measured"] and record["found"]
        assert record["certified_error"] <= config.epsilon
        assert record["achieved_density"] <= record["density"]
    # the quadratic overhead: at these widths l+1 needs more random weights than 2l
    for row in lplus1_fit.ratios(records, "measured") + lplus1_fit.ratios(records, "planned"):
        assert row["ratio"] > 1


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_from_its_cached_points(quick):
    """A second run measures nothing: every plan and prune comes from DIR/plans and DIR/prunes,
    whose names hold every setting the point depends on."""
    config, out, records = quick
    assert lplus1.run(config, out, progress=False, plots=False, cached_only=True) == records
    names = sorted(path.name for path in (out / "prunes/points").iterdir())
    assert names[0].startswith("c2l_w3_l2_g0.5_e0.1_s0_m")


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


def _record(construction, width, params, seed=0):
    return dict(
        construction=construction,
        width=width,
        depth=2,
        density=0.1,
        epsilon=0.01,
        seed=seed,
        planned=True,
        planned_random_params=params,
        planned_overparameterization=params / (2 * width * width),
        measured=False,
    )


def test_the_crossover_is_where_the_ratio_line_reaches_one():
    """l+1 / 2l = 4, 2, 1, 0.5 at widths 16 … 128: slope −1, crossover at 64, in range."""
    records = [_record("2l", w, 1000 * w) for w in (16, 32, 64, 128)]
    records += [_record("l+1", w, 1000 * w * 64 / w) for w in (16, 32, 64, 128)]
    slope, width, smallest = lplus1_fit.crossover(lplus1_fit.ratios(records, "planned"), 2, 0.1)
    assert slope == pytest.approx(-1) and width == pytest.approx(64) and smallest == 0.5
    text = lplus1_fit.crossover_text(slope, width, smallest, widest=128)
    assert text.startswith("in range")
    # a ratio growing with the width has no crossover
    growing = [_record("2l", w, 10 * w) for w in (16, 32)] + [
        _record("l+1", w, 30 * w * w) for w in (16, 32)
    ]
    slope, width, _ = lplus1_fit.crossover(lplus1_fit.ratios(growing, "planned"), 2, 0.1)
    assert slope == pytest.approx(1) and width is None
    # the width slope of m/m_t: m ∝ w³ over m_t ∝ w² is slope 1, within each seed
    cubic = [_record("l+1", w, w**3 * (1 + s), seed=s) for w in (16, 32, 64) for s in (0, 1)]
    assert lplus1_fit.width_slope(cubic, "l+1", 2, "planned") == pytest.approx(1)
    assert lplus1_fit.width_slope(cubic, "l+1", 2, "measured") is None
