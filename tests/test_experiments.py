"""The reproduction experiments: quick configs end to end, caching, config validation."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from sslth.experiments import ConfigError, load_config, theorem2, theorem3
from sslth.experiments.common import crossing, wilson

ROOT = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def theorem2_run(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("theorem2")
    config = load_config(ROOT / "configs/theorem2-quick.toml", theorem2.Config)
    records = theorem2.run(config, out, progress=False)
    return config, out, records


@pytest.fixture(scope="module")
def theorem3_run(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("theorem3")
    config = load_config(ROOT / "configs/theorem3-quick.toml", theorem3.Config)
    records = theorem3.run(config, out, progress=False)
    return config, out, records


@pytest.mark.slow
def test_theorem2_files(theorem2_run):
    _, out, records = theorem2_run
    for name in (
        "theorem2_points.csv",
        "theorem2_constants.csv",
        "theorem2_vs_n.png",
        "theorem2_vs_x.png",
        "summary.md",
    ):
        assert (out / name).stat().st_size > 0, name
    assert len(_rows(out / "theorem2_points.csv")) == len(records)
    assert "c_hyp" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_theorem2_success_rises_with_n(theorem2_run):
    _, _, records = theorem2_run
    curves: dict[tuple, list[dict]] = {}
    for r in records:
        curves.setdefault((r["distribution"], r["ratio"], r["delta"]), []).append(r)
    for rs in curves.values():
        rs.sort(key=lambda r: r["n"])
        assert rs[0]["success"] < 0.3 < 0.9 < rs[-1]["success"]
        assert all(r["budget_exhausted"] == 0 for r in rs)
        assert all(r["ci_low"] <= r["success"] <= r["ci_high"] for r in rs)


def _no_measuring(module, monkeypatch):
    """Make ``module.measure`` raise: a rerun that measures anything fails."""

    def measure(*args, **kwargs):
        raise AssertionError(f"{module.__name__} measured a point it had cached: {args[0]}")

    monkeypatch.setattr(module, "measure", measure)


def _point_files(out: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in (out / "points").iterdir()}


@pytest.mark.slow
def test_theorem2_rerun_uses_cache(theorem2_run, monkeypatch):
    config, out, records = theorem2_run
    before = _point_files(out)
    assert len(before) == len(records) > 0
    _no_measuring(theorem2, monkeypatch)
    again = theorem2.run(config, out, progress=False, plots=False)
    assert _point_files(out) == before  # nothing rewritten
    assert again == records


@pytest.mark.slow
def test_theorem3_files_and_validity(theorem3_run):
    config, out, records = theorem3_run
    for name in (
        "theorem3_points.csv",
        "theorem3_spread.csv",
        "theorem3_density.png",
        "summary.md",
    ):
        assert (out / name).stat().st_size > 0, name
    found = [r for r in records if r["found"]]
    assert found, "the quick config should find tickets"
    for r in found:
        assert r["certified_error"] <= r["epsilon"]
        assert r["achieved_density"] <= r["density"]
        assert r["overparameterization"] == pytest.approx(r["random_params"] / r["target_params"])
    assert "c_amp" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_theorem3_rerun_uses_cache(theorem3_run, monkeypatch):
    config, out, records = theorem3_run
    before = _point_files(out)
    assert len(before) == len(records) > 0
    _no_measuring(theorem3, monkeypatch)
    again = theorem3.run(config, out, progress=False, plots=False)
    assert _point_files(out) == before  # nothing rewritten
    assert again == records  # the same records, timings included


@pytest.mark.slow
def test_interrupted_sweep_resumes(tmp_path):
    config = theorem2.Config(
        distributions=["uniform"],
        ratios=[0.5],
        deltas=[1e-2],
        target_ranges=["unit"],
        instances=20,
        grid_points=3,
        max_n=16,
    )
    first = theorem2.run(config, tmp_path, progress=False, plots=False)
    victim = sorted((tmp_path / "points").iterdir())[0]
    victim.unlink()  # as if the run had stopped before this point
    second = theorem2.run(config, tmp_path, progress=False, plots=False)
    assert victim.exists()
    assert [r["solved"] for r in second] == [r["solved"] for r in first]  # seeded per point


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ratios = [0.5]\nbogus = 1\n", "bogus"),
        ("instances = 'many'\n", "instances"),
        ("deltas = 0.01\n", "deltas"),
        ("distributions = ['normal']\n", "normal"),
        ("instances = 1.5\n", "instances"),
    ],
)
def test_bad_theorem2_config(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=needle):
        load_config(path, theorem2.Config)


def test_bad_theorem3_config(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("widths = [4, 'eight']\n")
    with pytest.raises(ConfigError, match=r"widths\[1\]"):
        load_config(path, theorem3.Config)
    path.write_text("densities = [0.5, 2.0]\n")
    with pytest.raises(ConfigError, match="densities"):
        load_config(path, theorem3.Config)


@pytest.mark.slow
def test_cli_reports_bad_config(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("seeds = [0]\nunknown_key = true\n")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/reproduce.py"),
            "theorem3",
            "--config",
            str(path),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown_key" in result.stderr


def test_wilson_and_crossing():
    low, high = wilson(50, 100)
    assert low < 0.5 < high and high - low == pytest.approx(0.19, abs=0.01)
    assert wilson(0, 10)[0] == 0.0
    assert crossing([1, 2, 3], [0.0, 0.4, 0.8], 0.6) == pytest.approx(2.5)
    assert crossing([1, 2], [0.7, 0.9], 0.5) is None  # not bracketed


@pytest.mark.slow
def test_cached_only_reports_without_measuring(tmp_path):
    config = theorem2.Config(
        distributions=["uniform"],
        ratios=[0.5],
        deltas=[1e-2],
        target_ranges=["unit"],
        instances=20,
        grid_points=3,
        max_n=16,
    )
    assert theorem2.run(config, tmp_path, progress=False, plots=False, cached_only=True) == []
    assert not list((tmp_path / "points").iterdir())
