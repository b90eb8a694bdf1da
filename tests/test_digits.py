"""The digits demo (issue 6), reduced: a narrow MLP trained briefly, pruned, compared."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from sslth.experiments import digits  # noqa: E402


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
