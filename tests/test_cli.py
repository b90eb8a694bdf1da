"""The sslth command: exit 0 on good configs, 2 on bad ones; runs are skipped when done."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sslth.cli import main
from sslth.config import random_target

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """
[target]
kind = "random"
widths = [4, 6, 3]
seed = 2

[prune]
epsilon = 0.1
density = 0.4
"""


def test_prune_writes_results_and_skips_finished_run(tmp_path, capsys):
    config = _write(tmp_path, GOOD)
    out = tmp_path / "runs"
    assert main(["prune", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    (run,) = out.iterdir()
    assert {"report.json", "ticket.pt", "report.txt", "settings.json"} <= {
        p.name for p in run.iterdir()
    }
    report = json.loads((run / "report.json").read_text())
    assert report["certified_error"] <= 0.1 and report["density"] <= 0.4
    stamp = (run / "ticket.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["prune", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    assert "already holds this run" in capsys.readouterr().out
    assert (run / "ticket.pt").stat().st_mtime_ns == stamp
    # another seed is another run folder
    assert (
        main(["prune", "--config", str(config), "--out", str(out), "--seed", "1", "--quiet"]) == 0
    )
    assert len(list(out.iterdir())) == 2
    # verify re-certifies from the file
    assert main(["verify", str(run / "ticket.pt"), "--samples", "500"]) == 0
    assert "sslth: verified" in capsys.readouterr().out


def test_prune_from_a_state_dict(tmp_path):
    model = random_target([5, 4, 2], seed=9, bias=True)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    config = _write(
        tmp_path,
        '[target]\nkind = "state_dict"\npath = "model.pt"\nwidths = [5, 4, 2]\nbias = true\n'
        "[prune]\nepsilon = 0.1\ndensity = 0.5\n",
    )
    assert main(["prune", "--config", str(config), "--out", str(tmp_path / "o"), "--quiet"]) == 0


@pytest.mark.parametrize(
    "text,message",
    [
        ("[target]\nwidth = [3, 2]\n", "[target] width: unknown key"),
        ("[prune]\nepsilon = 'small'\n", "[prune] epsilon: expected a number"),
        ("[prune]\nepsilon = 0.1\ndensity = 0.5\nn = 2.5\n", "[prune] n: expected an integer"),
        ('[target]\nkind = "state_dict"\npath = "nope.pt"\n', "file not found"),
        ('[target]\nkind = "conv"\n', "[target] kind"),
        ("[extra]\na = 1\n", "extra: unknown section"),
        ("[prune]\nepsilon = -1.0\ndensity = 0.5\n", "epsilon must be finite, > 0"),
        ("[prune]\nepsilon = 0.1\ndensity = 2.0\n", "density must be finite"),
        ("[prune]\ndensity = 0.5\n", "[prune] epsilon: missing"),
        ("[prune]\nepsilon = 0.1\ndensity = 0.5\nsed = 1\n", "[prune] sed: unknown key"),
        ("[prune]\nepsilon = 0.1\ndensity = 0.5\nmethod = 'exactly'\n", "method must be one of"),
        ("[prune]\nepsilon = 0.1\ndensity = 0.5\ndevice = 'tpu'\n", "'tpu'"),
        ("[prune]\nepsilon = 0.1\ndensity = 0.5\nseed = -1\n", "seed must be in [0, 2^62)"),
        ("[target\n", "not valid TOML"),
    ],
)
def test_bad_configs_exit_2_with_one_clear_line(tmp_path, capsys, text, message):
    config = _write(tmp_path, text)
    assert main(["prune", "--config", str(config), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_missing_config_and_mismatched_state_dict(tmp_path, capsys):
    assert main(["prune", "--config", str(tmp_path / "none.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    torch.save(random_target([3, 2]).state_dict(), tmp_path / "m.pt")
    config = _write(
        tmp_path,
        '[target]\nkind = "state_dict"\npath = "m.pt"\nwidths = [4, 2]\n'
        "[prune]\nepsilon = 0.1\ndensity = 0.5\n",
    )
    assert main(["prune", "--config", str(config), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "does not match widths" in capsys.readouterr().err


def test_verify_refuses_a_foreign_file(tmp_path, capsys):
    torch.save({"x": torch.ones(2)}, tmp_path / "f.pt")
    assert main(["verify", str(tmp_path / "f.pt")]) == 2
    assert "not an sslth ticket" in capsys.readouterr().err


def test_shipped_configs_are_valid():
    from sslth.config import load_config

    for path in sorted((ROOT / "configs").glob("*.toml")):
        if path.stem.startswith("theorem"):
            continue  # experiment files, validated by their own loader
        load_config(path)


def test_console_script_demo_runs_and_reports_within_epsilon():
    result = subprocess.run(
        [sys.executable, "-m", "sslth.cli", "demo", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "within ε: yes" in result.stdout
