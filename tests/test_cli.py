"""The sslth command: exit 0 on good configs, 2 on bad ones; runs are skipped when done."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import sslth
from sslth.cli import main
from sslth.config import random_target

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


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


SHIPPED_PRUNE_CONFIGS = {"bias-random", "digits-cnn-state-dict", "small-random"}
SHIPPED_EXPERIMENTS = {"theorem2", "theorem3", "theorem4", "lplus1"}


def _sweep_size(config) -> int:
    """Points of a sweep, up to the grid along n: the product of its list settings' lengths."""
    size = getattr(config, "instances", 1)
    for value in vars(config).values():
        if isinstance(value, list):
            size *= len(value)
    return size


def test_shipped_configs_are_valid():
    """Every file in configs/ loads through the loader its command uses, into the expected
    type, with the file's values (nothing dropped or defaulted) and a target that builds."""
    import tomllib
    from dataclasses import fields

    from sslth.config import Config, TargetConfig, load_config, load_target
    from sslth.experiments import load_config as load_experiment
    from sslth.experiments import lplus1, theorem2, theorem3, theorem4
    from sslth.search.options import PruneOptions

    paths = sorted((ROOT / "configs").glob("*.toml"))
    experiments = {"theorem2": theorem2.Config, "theorem3": theorem3.Config}
    experiments["theorem4"] = theorem4.Config
    experiments["lplus1"] = lplus1.Config
    expected = SHIPPED_PRUNE_CONFIGS | {
        f"{name}{suffix}" for name in SHIPPED_EXPERIMENTS for suffix in ("", "-quick")
    }
    assert {p.stem for p in paths} == expected  # a new config must be added here
    sizes = {}
    for path in paths:
        raw = tomllib.loads(path.read_text())
        name = path.stem.removesuffix("-quick")
        if name in experiments:
            config = load_experiment(path, experiments[name])
            assert type(config) is experiments[name], path.name
            known = {f.name for f in fields(config)}
            assert set(raw) <= known, path.name
            for key, value in raw.items():
                assert getattr(config, key) == value, (path.name, key)
            config.validate()
            sizes[path.stem] = _sweep_size(config)
            continue
        config = load_config(path)
        assert type(config) is Config and type(config.target) is TargetConfig, path.name
        assert config.source == str(path)
        options = config.options()
        assert type(options) is PruneOptions
        for key, value in raw["prune"].items():
            assert getattr(options, key) == value, (path.name, key)
        assert 0 < options.epsilon < 1 and 0 < options.density < 1 and options.radius > 0
        for key, value in raw["target"].items():
            if key != "path":
                assert getattr(config.target, key) == value, (path.name, key)
        model, target = load_target(config, options)
        if "widths" in raw["target"]:
            assert target.widths == raw["target"]["widths"], path.name
        bias = raw["target"].get("bias", config.target.kind == "state_dict")
        assert all((layer.bias is not None) == bias for layer in target.layers), path.name
        if config.target.kind == "random":
            norm = raw["target"].get("spectral_norm", 1.0)
            for layer in target.layers:
                assert float(torch.linalg.matrix_norm(layer.weight, ord=2)) == pytest.approx(
                    norm, rel=1e-5
                )
        else:  # the file's weights, not a random model of the same shape
            assert Path(config.target.path) == path.parent / raw["target"]["path"]
            state = torch.load(config.target.path, weights_only=True)
            weights = [v for k, v in state.items() if k.endswith("weight")]
            assert len(weights) == len(target.layers)
            for layer, weight in zip(target.layers, weights, strict=True):
                assert torch.equal(layer.weight.float(), weight.float()), path.name
    for name in SHIPPED_EXPERIMENTS:  # a quick config is a smaller sweep than the full one
        assert sizes[f"{name}-quick"] < sizes[name], name


@pytest.mark.slow
def test_console_script_demo_runs_and_reports_within_epsilon():
    """With progress on: the events and bars go to stderr, stdout holds the header and the
    report alone."""
    result = subprocess.run(
        [sys.executable, "-m", "sslth.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "within ε: yes" in result.stdout
    assert "sslth: round 1" in result.stderr and "sslth: round" not in result.stdout
    assert all(not line.startswith("sslth: layer") for line in result.stdout.splitlines())


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [["demo", "--quiet"], ["plan", "--config", str(ROOT / "configs/small-random.toml")]],
    ids=["demo", "plan"],
)
def test_a_closed_stdout_ends_quietly(command):
    """``sslth … | head``: the reader is gone before sslth writes; exit 141 (as SIGPIPE would
    end it), no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sslth.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()  # before the child writes anything: its first write must fail
    stderr = process.stderr.read()
    assert process.wait(timeout=600) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


class _Named(nn.Module):
    """A model with named layers and its own forward (keys fc1.*, fc2.*)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class _Reversed(nn.Module):
    """Registers its output layer first: the file's order is not the forward order."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(4, 2)
        self.hidden = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


def _ball(count: int, shape: tuple[int, ...], radius: float = 1.0) -> torch.Tensor:
    """Random float64 points of the ball of ``radius``, on the sphere and inside."""
    points = torch.randn(
        count, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    norms = points.flatten(1).norm(dim=1).view(-1, *[1] * len(shape))
    scale = torch.rand(count, dtype=torch.float64).view(-1, *[1] * len(shape)).clamp(min=0.5)
    return points / norms * radius * scale


def _prune_file(tmp_path, model_state, target_lines, prune_lines="") -> sslth.Ticket:
    torch.save(model_state, tmp_path / "model.pt")
    config = _write(
        tmp_path,
        f'[target]\nkind = "state_dict"\npath = "model.pt"\n{target_lines}\n'
        f"[prune]\nepsilon = 0.1\ndensity = 0.5\nempirical_samples = 500\n{prune_lines}",
    )
    out = tmp_path / "runs"
    assert main(["prune", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    (run,) = out.iterdir()
    return sslth.load(run / "ticket.pt", samples=200)


def _check_approximates(ticket: sslth.Ticket, forward, shape: tuple[int, ...]) -> None:
    """The ticket's certificate holds against ``forward`` (the saved model, in float64)."""
    points = _ball(256, shape)
    with torch.no_grad():
        gap = (forward(points) - ticket.network(points)).flatten(1).norm(dim=1).max()
    assert ticket.report.certified_error <= 0.1
    assert gap <= ticket.report.certified_error


@pytest.mark.parametrize(
    "make,architecture",
    [
        (_Named, "widths = [5, 4, 2]"),
        (
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)),
            "widths = [5, 4, 2]",
        ),
        (
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)),
            'layers = ["flatten", "linear 5 4", "relu", "linear 4 2 bias=true"]',
        ),
        (_Reversed, 'widths = [5, 4, 2]\nkeys = ["hidden", "out"]'),
    ],
)
def test_state_dict_keys_are_mapped_by_order(tmp_path, make, architecture):
    torch.manual_seed(3)
    model = make()
    keys = list(model.state_dict())
    assert keys[0] in ("fc1.weight", "1.weight", "out.weight")  # not the 0.*, 2.* of old
    ticket = _prune_file(tmp_path, model.state_dict(), architecture)
    # the ticket's target is the file's model, weight for weight
    saved = [p.detach().double() for p in model.state_dict().values()]
    layers = ticket.target.layers
    mine = [t for layer in layers for t in (layer.weight, layer.bias)]
    if isinstance(model, _Reversed):
        saved = saved[2:] + saved[:2]
    assert all(torch.equal(a, b) for a, b in zip(mine, saved, strict=True))
    _check_approximates(ticket, model.double(), (5,))


@pytest.mark.slow
def test_cnn_state_dict_from_a_layers_config(tmp_path):
    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)
    )
    ticket = _prune_file(
        tmp_path,
        cnn.state_dict(),
        'layers = ["conv 1 2 3x3 padding=1", "relu", "maxpool 2", "flatten", "linear 8 3"]',
        "input_shape = [1, 4, 4]\n",
    )
    assert ticket.target.input_shape == (1, 4, 4)
    _check_approximates(ticket, cnn.double(), (1, 4, 4))
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "settings.json").read_text())["target"]["layers"][0].startswith("conv")


def test_shipped_cnn_config_plans(capsys):
    config = ROOT / "configs" / "digits-cnn-state-dict.toml"
    assert main(["plan", "--config", str(config), "--no-calibrate"]) == 0
    assert "conv 1->4 3x3" in capsys.readouterr().out


def _bad_files(tmp_path):
    """name -> (what torch.save writes, [target] lines, expected part of the message)."""
    bn = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    mlp = random_target([5, 4, 2], bias=True)
    return {
        "batchnorm": (bn.state_dict(), "widths = [5, 4, 2]", "'1.running_mean' is neither"),
        "whole module": (mlp, "widths = [5, 4, 2]", "save model.state_dict() instead"),
        "checkpoint": (
            {"epoch": 3, "model": mlp.state_dict()},
            "widths = [5, 4, 2]",
            "entry 'epoch' is not a tensor",
        ),
        "shape": (mlp.state_dict(), "widths = [5, 3, 2]", "'0.weight' has shape (4, 5)"),
        "count": (mlp.state_dict(), "widths = [5, 4, 2, 2]", "the file has 2 Linear/Conv2d"),
        "bias": (mlp.state_dict(), "widths = [5, 4, 2]\nbias = false", "without a bias"),
        "keys": (mlp.state_dict(), 'widths = [5, 4, 2]\nkeys = ["fc1", "2"]', "'fc1'"),
        "no architecture": (mlp.state_dict(), "", "widths, layers or module: required"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "batchnorm",
        "whole module",
        "checkpoint",
        "shape",
        "count",
        "bias",
        "keys",
        "no architecture",
    ],
)
def test_bad_state_dicts_exit_2_with_one_clean_line(tmp_path, capsys, name):
    saved, target_lines, message = _bad_files(tmp_path)[name]
    torch.save(saved, tmp_path / "model.pt")
    config = _write(
        tmp_path,
        f'[target]\nkind = "state_dict"\npath = "model.pt"\n{target_lines}\n'
        "[prune]\nepsilon = 0.1\ndensity = 0.5\n",
    )
    assert main(["prune", "--config", str(config), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "\x1b" not in err


@pytest.mark.parametrize(
    "layers,message",
    [
        ('["conv 1 8"]', "[target] layers[0]: 'conv 1 8': conv takes 3 sizes"),
        ('["linear 4 6", "relu", "lin 6 3"]', "[target] layers[2]: 'lin 6 3': unknown layer"),
        ('["linear 4 6 stride=2"]', "linear has no option 'stride'"),
        ('["conv 1 2 3 padding=-1"]', "padding must be"),
        ('["maxpool 2x"]', "K must be an int or HxW"),
        ('["linear 4 6", "relu", "relu", "linear 6 3"]', "layers[2] (ReLU): two activations"),
        ('["linear 4 6", "linear 6 3"]', "layers[0] and layers[1]: no nn.ReLU"),
        ('["linear 4 6", "relu", "linear 5 3"]', "layers[2] (Linear 5->3): shapes do not chain"),
        ('["conv 1 2 3", "relu", "flatten", "linear 8 2"]', "[prune] input_shape: required"),
        ('"linear 4 6"', "[target] layers: expected a non-empty list"),
    ],
)
def test_bad_layers_exit_2_naming_the_entry(tmp_path, capsys, layers, message):
    config = _write(
        tmp_path, f"[target]\nlayers = {layers}\n[prune]\nepsilon = 0.1\ndensity = 0.5\n"
    )
    assert main(["plan", "--config", str(config), "--no-calibrate"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_random_layers_target_equals_its_widths():
    from sslth.config import TargetConfig, build_target
    from sslth.fields import from_mapping

    def digest(table):
        model = build_target(from_mapping(TargetConfig, table))
        return sslth.as_target(model).digest()

    layers = ["linear 4 6", "relu", "linear 6 3"]
    assert digest({"widths": [4, 6, 3], "seed": 2, "bias": True}) == digest(
        {"layers": layers, "seed": 2, "bias": True}
    )
    with pytest.raises(sslth.ConfigError, match="give one architecture"):
        from_mapping(TargetConfig, {"widths": [4, 6, 3], "layers": layers})


def test_a_request_no_ticket_meets_prints_the_best_report(tmp_path, capsys):
    config = _write(
        tmp_path,
        "[target]\nwidths = [4, 3, 2]\n[prune]\nepsilon = 0.001\ndensity = 0.5\nn = 3\nk = 1\n"
        "empirical_samples = 200\n",
    )
    assert main(["prune", "--config", str(config), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "the best ticket found:" in captured.out
    assert "sslth ticket report" in captured.out and "within ε: NO" in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sslth: no ticket met ε = 0.001")
    assert not (tmp_path / "o").exists()  # nothing is written for a failed request


def test_one_version_source(capsys):
    """pyproject reads the version from sslth/_version.py (statically), and the package, the
    reports, the run keys and ``sslth --version`` all show that one."""
    from setuptools.config.pyprojecttoml import read_configuration

    from sslth import report
    from sslth.config import run_key

    packaged = read_configuration(ROOT / "pyproject.toml")["project"]["version"]
    assert packaged == sslth.__version__ == report.versions()["sslth"]
    target = sslth.as_target(random_target([3, 2], seed=0))
    assert run_key(target, sslth.PruneOptions(0.1, 0.5))["sslth"] == packaged
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"sslth {packaged}"
