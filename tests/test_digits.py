"""The digits demo (issue 6), reduced: a narrow MLP trained briefly, pruned, compared."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from sslth.experiments import digits  # noqa: E402


@pytest.mark.slow
def test_digits_ticket_keeps_every_prediction(tmp_path) -> None:
    # a narrower, briefer MLP and a lower density (smaller k: cheaper subset sums) keep this
    # to seconds; the demo itself runs 64-32-10 at density 0.1
    result = digits.run(tmp_path, hidden=16, epochs=100, density=0.05, seed=0, figures=False)
    assert result.predictions_equal
    assert result.ticket_accuracy == result.target_accuracy
    assert result.target_accuracy > 0.8  # the target did learn something
    assert result.max_logit_deviation <= result.certified_error <= result.epsilon
    assert result.epsilon <= 0.5 * result.smallest_test_margin
    assert result.density <= result.density_limit
    written = json.loads((tmp_path / "report.json").read_text())
    for key in (
        "target_accuracy",
        "ticket_accuracy",
        "max_logit_deviation",
        "certified_error",
        "density",
        "report",
    ):
        assert key in written
    assert written["report"]["certified_error"] == result.certified_error


def test_epsilon_choice() -> None:
    assert digits.choose_epsilon(0.3) == 0.1  # capped
    assert digits.choose_epsilon(0.02) == 0.01


@pytest.mark.parametrize("script", ["digits_demo.py", "digits_cnn_demo.py"])
@pytest.mark.parametrize("figures", [True, False])
def test_demo_scripts_name_only_the_files_they_write(
    monkeypatch, capsys, tmp_path, script, figures
) -> None:
    # issue 14: `--no-figures` said it wrote logits.png and masks.png
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    from sslth.experiments import digits_cnn

    path = Path(__file__).resolve().parents[1] / "scripts" / script
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = SimpleNamespace(
        target_accuracy=1.0,
        ticket_accuracy=1.0,
        ticket_accuracy_float32=1.0,
        predictions_equal=True,
        epsilon=0.05,
        smallest_test_margin=0.1,
        radius=4.0,
        max_logit_deviation=0.001,
        certified_error=0.02,
        empirical_error=0.001,
        density=0.09,
        density_limit=0.1,
        n=[10],
        k=[2],
        timings={"train": 1.0, "prune": 1.0},
    )
    calls = []

    def run(out, **kwargs):
        calls.append(kwargs["figures"])
        return result

    monkeypatch.setattr(digits, "run", run)
    monkeypatch.setattr(digits_cnn, "run", run)
    module.main(["--out", str(tmp_path)] + ([] if figures else ["--no-figures"]))
    assert calls == [figures]
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote")]
    assert len(wrote) == 1 and "report.json" in wrote[0]
    assert ("logits.png" in wrote[0]) == figures and ("masks.png" in wrote[0]) == figures
