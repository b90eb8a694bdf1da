"""docs/examples.md runs: every code block of it, in order, in an empty folder.

Python blocks share one namespace (the page reads as one script), a TOML block whose first line
is ``# NAME.toml`` is written to that file, and each line of a bash block is an ``sslth``
command run through :func:`sslth.cli.main`, which must exit 0.
"""

import re
import shlex
import warnings
from pathlib import Path

import pytest
import torch

import sslth
from sslth.cli import main

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples.md"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


pytestmark = pytest.mark.usefixtures("one_thread")


def blocks(path: Path) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of a Markdown file, in order."""
    return [(match[1], match[2]) for match in _BLOCK.finditer(path.read_text())]


def test_every_block_has_a_runner():
    found = blocks(EXAMPLES)
    assert {language for language, _ in found} == {"python", "toml", "bash"}
    for language, code in found:
        if language == "toml":
            assert re.match(r"# [\w.-]+\.toml\n", code), code.splitlines()[0]
        if language == "bash":
            assert all(line.startswith("sslth ") for line in code.splitlines() if line.strip())


@pytest.mark.slow
def test_examples_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__examples__"}
    commands = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. scikit-learn's ConvergenceWarning on a tiny fit
        for language, code in blocks(EXAMPLES):
            if language == "python":
                exec(compile(code, str(EXAMPLES), "exec"), namespace)  # noqa: S102
            elif language == "toml":
                name = code.splitlines()[0][2:].strip()
                (tmp_path / name).write_text(code)
            else:
                for line in filter(str.strip, code.splitlines()):
                    assert main(shlex.split(line)[1:]) == 0, line
                    commands += 1
    assert commands == 4
    out = capsys.readouterr().out
    # the commands printed their plans and reports, and wrote both runs
    assert out.count("sslth plan: target") >= 3 and out.count("within ε: yes") >= 2
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and runs[0].startswith("state_dict-1-2-10")
    # the CLI's ticket approximates the saved CNN, not some other network
    ticket = sslth.load(next((tmp_path / "runs").glob("state_dict-1-2-10*")) / "ticket.pt")
    cnn = namespace["cnn"].double()
    points = torch.randn(64, 1, 8, 8, dtype=torch.float64)
    points *= (
        5.0
        * torch.rand(64, 1, 1, 1, dtype=torch.float64)
        / points.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    )
    with torch.no_grad():
        gap = (cnn(points) - ticket.network(points)).norm(dim=1).max()
    assert gap <= ticket.report.certified_error <= 0.1


def test_untransposed_sklearn_coefs_get_a_hint():
    from sklearn.datasets import load_wine
    from sklearn.neural_network import MLPClassifier

    x, y = load_wine(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(x, y)
    untransposed = [
        (torch.from_numpy(w), torch.from_numpy(b))
        for w, b in zip(clf.coefs_, clf.intercepts_, strict=True)
    ]
    with pytest.raises(sslth.TargetError, match=r"\(d_out, d_in\).*coefs_.*transposed"):
        sslth.as_target(untransposed)
    transposed = [(w.T, b) for w, b in untransposed]
    assert sslth.as_target(transposed).widths == [13, 5, 3]


# ---------------------------------------------------------------- README.md
README = ROOT / "README.md"


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    """The README's Python blocks run in order, as one script (the API and the CNN example)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    python = [code for language, code in blocks(README) if language == "python"]
    assert len(python) >= 2
    for code in python:
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102
    ticket = namespace["ticket"]  # the CNN's, the last one
    assert ticket.report.certified_error <= 0.1 and ticket.report.density <= 0.2
    assert (tmp_path / "ticket.pt").is_file()


def test_readme_lists_every_prune_option_with_its_default():
    import dataclasses

    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|", README.read_text(), re.M))
    for field in dataclasses.fields(sslth.PruneOptions):
        assert field.name in rows, f"README's option table lacks {field.name}"
        default = "required" if field.default is dataclasses.MISSING else repr(field.default)
        assert rows[field.name].strip() == default, field.name


def test_readme_figures_and_links_exist():
    text = README.read_text()
    targets = re.findall(r"\]\(((?:docs|configs|scripts)/[^)#\s]+)", text)
    assert any(t.endswith(".png") for t in targets)
    for target in targets:
        assert (ROOT / target).exists(), target
