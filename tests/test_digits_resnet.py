"""The digits ResNet demo (scripts/digits_resnet_demo.py): a module class with BatchNorm,
residual blocks (one with a 1×1 projection) and global average pooling, trained, pruned and
compared on the test set."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from sslth.experiments import digits_resnet  # noqa: E402

REPORT_KEYS = (
    "target_accuracy",
    "ticket_accuracy",
    "predictions_equal",
    "max_logit_deviation",
    "certified_error",
    "epsilon",
    "density",
    "density_limit",
)


@pytest.mark.slow
def test_resnet_ticket_keeps_every_prediction(tmp_path, one_thread) -> None:
    # the demo's model and training (smaller ones leave test margins, hence ε, below what the
    # worst-case certificate of a BatchNorm ResNet reaches); no refinement, fewer samples
    result = digits_resnet.run(tmp_path, refine=False, empirical_samples=1000)
    assert result.predictions_equal
    assert result.ticket_accuracy == result.target_accuracy > 0.9
    assert result.max_logit_deviation <= result.certified_error <= result.epsilon
    assert result.epsilon <= 0.5 * result.smallest_test_margin
    assert result.density <= result.density_limit == 0.1
    assert len(result.n) == 7  # stem, 2 + 2 block convs, the projection, the head
    written = json.loads((tmp_path / "report.json").read_text())
    for key in REPORT_KEYS:
        assert key in written, key
