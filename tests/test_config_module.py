"""A config's target given as a model class (``module = "package.module:ClassName"``) and its
saved state_dict: traced as a graph target, pruned, saved, verified; bad input refused in one
line with nothing written."""

import json
import sys
from pathlib import Path

import pytest
import torch

import sslth
from sslth.cli import main
from tests.graph_targets import random_graph_target

pytestmark = pytest.mark.usefixtures("one_thread")

MLP_KWARGS = "{ d_in = 2, width = 3, hidden = 3, blocks = 1, d_out = 2 }"
RESNET_KWARGS = "{ channels = 1, widths = [2, 3], classes = 2, strides = [1, 2] }"


def _config(tmp_path, target_lines: str, prune_lines: str = "input_shape = [2]") -> str:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[target]\nkind = "state_dict"\npath = "model.pt"\n{target_lines}\n'
        f"[prune]\nepsilon = 0.1\ndensity = 1.0\nempirical_samples = 200\n{prune_lines}\n"
    )
    return str(path)


def _mlp(tmp_path):
    model, shape = random_graph_target(0)  # ResidualMLP(2, 3, 3, 1, 2), BatchNorm, Dropout
    assert shape == (2,)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    return model


def test_prune_plan_verify_a_module_class_target(tmp_path, capsys):
    model = _mlp(tmp_path)
    config = _config(tmp_path, f'module = "tests.graph_targets:ResidualMLP"\nkwargs = {MLP_KWARGS}')
    out = tmp_path / "runs"
    assert main(["plan", "--config", config, "--no-calibrate"]) == 0
    assert main(["prune", "--config", config, "--out", str(out), "--quiet"]) == 0
    (run,) = out.iterdir()
    assert run.name.startswith("state_dict-")
    settings = json.loads((run / "settings.json").read_text())
    assert settings["target"]["module"] == "tests.graph_targets:ResidualMLP"
    assert settings["target"]["kwargs"]["blocks"] == 1
    report = json.loads((run / "report.json").read_text())
    assert report["certified_error"] <= 0.1
    capsys.readouterr()
    assert main(["verify", str(run / "ticket.pt"), "--samples", "200"]) == 0
    assert "verified" in capsys.readouterr().out
    ticket = sslth.load(run / "ticket.pt", samples=200)
    # the ticket's target is the class filled with the file: BatchNorm folded, add kept
    assert ticket.target.digest() == sslth.as_target(model, input_shape=[2]).digest()
    assert any(node.kind == "add" for node in ticket.target.graph)
    points = torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    points = points / points.norm(dim=1, keepdim=True) * torch.rand(256, 1, dtype=torch.float64)
    with torch.no_grad():
        gap = (model.double()(points) - ticket.network(points)).norm(dim=1).max()
    assert gap <= ticket.report.certified_error


def test_plan_of_a_conv_resnet_class_from_the_configs_folder(tmp_path, capsys):
    """The module is looked up in the config's folder too (a models.py beside it)."""
    source = Path(__file__).with_name("graph_targets.py")
    (tmp_path / "my_models.py").write_text(source.read_text())
    model, _ = random_graph_target(1)  # SmallResNet(1, [2, 3], 2, strides=[1, 2])
    torch.save(model.state_dict(), tmp_path / "model.pt")
    config = _config(
        tmp_path,
        f'module = "my_models:SmallResNet"\nkwargs = {RESNET_KWARGS}',
        "input_shape = [1, 4, 4]",
    )
    assert main(["plan", "--config", config, "--no-calibrate", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["within_limits"]
    assert str(tmp_path) not in sys.path  # the folder was searched for the import only


_BAD_MODULE = """
import torch
from torch import nn


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


class Strict(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(2, width)

    def forward(self, x):
        return self.fc(x)


NOT_A_CLASS = 3
"""


def _bad_cases(tmp_path):
    model = _mlp(tmp_path)
    state = model.state_dict()
    (tmp_path / "bad_models.py").write_text(_BAD_MODULE)
    (tmp_path / "broken_models.py").write_text("import no_such_package_here\n")
    mlp = f'module = "tests.graph_targets:ResidualMLP"\nkwargs = {MLP_KWARGS}'
    extra = {**state, "extra.weight": torch.zeros(2)}
    missing = {k: v for k, v in state.items() if k != "head.bias"}
    shaped = {**state, "head.bias": torch.zeros(3)}
    wide = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
    wide["head.bias"] = wide["head.bias"] + 1e-12  # not a float32 value
    return {
        "no module": ('module = "no_such_models:Net"', None, "no module named 'no_such_models'"),
        "broken import": ('module = "broken_models:Net"', None, "importing 'broken_models'"),
        "no class": ('module = "tests.graph_targets:Nope"', None, "has no 'Nope'"),
        "not a class": ('module = "bad_models:NOT_A_CLASS"', None, "not an nn.Module class"),
        "bad spec": ('module = "bad_models.Branchy"', None, "package.module:ClassName"),
        "constructor": ('module = "bad_models:Strict"', None, "Strict(**kwargs) raised"),
        "with widths": (f"{mlp}\nwidths = [2, 2]", None, "widths: not with module"),
        "kwargs alone": ("kwargs = { a = 1 }\nwidths = [2, 2]", None, "only with module"),
        "unexpected key": (mlp, extra, "'extra.weight', which the model does not"),
        "missing key": (mlp, missing, "'head.bias', which the file lacks"),
        "shape": (mlp, shaped, "'head.bias' has shape (3,)"),
        "dtype": (mlp, wide, "'head.bias' is torch.float64"),
        "not traceable": (
            'module = "bad_models:Branchy"',
            {"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)},
            "cannot be traced",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "no module",
        "broken import",
        "no class",
        "not a class",
        "bad spec",
        "constructor",
        "with widths",
        "kwargs alone",
        "unexpected key",
        "missing key",
        "shape",
        "dtype",
        "not traceable",
    ],
)
def test_bad_module_targets_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, case):
    lines, state, message = _bad_cases(tmp_path)[case]
    if state is not None:
        torch.save(state, tmp_path / "model.pt")
    config = _config(tmp_path, lines)
    out = tmp_path / "runs"
    for command in (
        ["plan", "--config", config, "--no-calibrate"],
        ["prune", "--config", config, "--out", str(out), "--quiet"],
    ):
        assert main(command) == 2, case
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert message in err, err
    assert not out.exists()
