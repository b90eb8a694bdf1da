"""The Theorem 4 (CNN targets) reproduction: quick config end to end, the cache, config checks."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sslth.experiments import EXPERIMENTS, ConfigError, load_config, theorem4

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("theorem4")
    config = load_config(ROOT / "configs/theorem4-quick.toml", theorem4.Config)
    threads = torch.get_num_threads()
    records = theorem4.run(config, out, progress=False)
    assert torch.get_num_threads() == threads  # the sweep's thread setting is not left behind
    return config, out, records


def _series_key(record: dict) -> tuple:
    return tuple(record[k] for k in ("channels", "input_size", "bias", "epsilon", "seed"))


@pytest.mark.slow
def test_files(quick_run):
    _, out, records = quick_run
    for name in (
        "theorem4_points.csv",
        "theorem4_spread.csv",
        "theorem4_density.png",
        "summary.md",
    ):
        assert (out / name).stat().st_size > 0, name
    with (out / "theorem4_points.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(records)
    summary = (out / "summary.md").read_text()
    assert "c_amp" in summary
    assert "empirical ≤ certified: yes" in summary


@pytest.mark.slow
def test_every_ticket_is_certified_within_epsilon_and_density(quick_run):
    config, _, records = quick_run
    found = [r for r in records if r["found"]]
    # the quick config is well inside what the construction reaches: every point finds one
    assert (
        len(found) == len(records) == len(config.seeds) * len(config.biases) * len(config.densities)
    )
    for r in found:
        assert r["certified_error"] <= r["epsilon"]
        assert r["achieved_density"] <= r["density"]
        assert r["empirical_error"] <= r["certified_error"]
        assert r["overparameterization"] == pytest.approx(r["random_params"] / r["target_params"])
        # the targets' layers have operator norm <= 1 (a certified bound) and close to it
        assert all(0.9 < p <= 1.0 + 1e-9 for p in r["norm_power"])


@pytest.mark.slow
def test_overparameterization_grows_as_density_falls(quick_run):
    _, _, records = quick_run
    series: dict[tuple, list[dict]] = {}
    for r in records:
        series.setdefault(_series_key(r), []).append(r)
    for rs in series.values():
        rs.sort(key=lambda r: -r["density"])
        ratios = [r["overparameterization"] for r in rs]
        assert all(a < b for a, b in zip(ratios, ratios[1:], strict=False)), ratios
        assert ratios[-1] > 4 * ratios[0]


@pytest.mark.slow
def test_rerun_measures_nothing(quick_run, monkeypatch):
    config, out, records = quick_run

    def refuse(*args, **kwargs):
        raise AssertionError("a cached point was measured again")

    monkeypatch.setattr(theorem4, "measure", refuse)
    again = theorem4.run(config, out, progress=False, plots=False)
    assert [r["cpu_seconds"] for r in again] == [r["cpu_seconds"] for r in records]


@pytest.mark.slow
def test_interrupted_sweep_measures_only_the_missing_point(quick_run, monkeypatch, tmp_path):
    config, out, records = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    victim = sorted((copy / "points").iterdir())[0]
    victim.unlink()  # as if the run had stopped before this point
    measured = []
    original = theorem4.measure

    def counting(settings, *args, **kwargs):
        measured.append(settings)
        return original(settings, *args, **kwargs)

    monkeypatch.setattr(theorem4, "measure", counting)
    again = theorem4.run(config, copy, progress=False, plots=False)
    assert len(measured) == 1 and victim.exists()
    # the prune is seeded: the re-measured point has the same ticket size
    assert [r["random_params"] for r in again] == [r["random_params"] for r in records]


@pytest.mark.slow
def test_variants_share_the_kernels():
    plain = theorem4.make_target(4, 8, bias=False, seed=3)
    biased = theorem4.make_target(4, 8, bias=True, seed=3)
    larger = theorem4.make_target(4, 16, bias=False, seed=3)
    for a, b, c in zip(plain, biased, larger, strict=True):
        if isinstance(a, torch.nn.Conv2d):
            assert torch.equal(a.weight, b.weight)
            # the same draw, rescaled to operator norm <= 1 on the other input shape
            ratio = c.weight / a.weight
            assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio))
            assert a.bias is None and b.bias is not None


def test_paper_shape():
    # l = 2 layers, the larger has 9·c² kernel entries
    assert theorem4.layer_params(4) == [36, 144]
    expected = math.log2(2 * 2 * 144 / 0.05) ** 2 / 1.0
    assert theorem4.paper_shape(4, 0.05, 0.5) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("channels = [2, 'four']\n", r"channels\[1\]"),
        ("densities = [0.5, 2.0]\n", "densities"),
        ("biases = ['yes']\n", r"biases\[0\]"),
        ("input_sizes = [0]\n", "input_sizes"),
        ("threads = -1\n", "threads"),
        ("seeds = [0]\nbogus = 1\n", "bogus"),
    ],
)
def test_bad_config_is_refused_naming_the_key(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path, theorem4.Config)


@pytest.mark.slow
def test_cli_runs_theorem4_and_reports_bad_config(tmp_path):
    assert "theorem4" in EXPERIMENTS
    path = tmp_path / "bad.toml"
    path.write_text("channels = [2]\nunknown_key = true\n")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/reproduce.py"),
            "theorem4",
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
