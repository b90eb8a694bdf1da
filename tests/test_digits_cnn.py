"""The CNN digits demo, reduced: a narrower CNN trained briefly, pruned, compared."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("sklearn")

from sslth.experiments import digits_cnn  # noqa: E402

REPORT_KEYS = (
    "target_accuracy",
    "ticket_accuracy",
    "ticket_accuracy_float32",
    "predictions_equal",
    "max_logit_deviation",
    "certified_error",
    "empirical_error",
    "density",
    "density_limit",
    "epsilon",
    "radius",
    "n",
    "k",
    "report",
)


@pytest.mark.slow
def test_cnn_ticket_keeps_every_prediction(tmp_path, one_thread) -> None:
    # 4 and 4 channels for 80 epochs (the demo: 8 and 16 for 150) still learn the digits; no
    # refinement and fewer empirical samples keep the prune to about a second
    result = digits_cnn.run(
        tmp_path,
        channels=(4, 4),
        epochs=80,
        lr=0.03,
        density=0.1,
        seed=0,
        figures=False,
        refine=False,
        empirical_samples=1000,
    )
    assert result.predictions_equal
    assert result.ticket_accuracy == result.target_accuracy
    assert result.target_accuracy > 0.8  # the target did learn something
    assert result.empirical_error <= result.certified_error
    assert result.max_logit_deviation <= result.certified_error <= result.epsilon
    assert result.epsilon <= 0.5 * result.smallest_test_margin
    assert result.density <= result.density_limit == 0.1
    assert len(result.n) == len(result.k) == 3  # conv, conv, linear
    written = json.loads((tmp_path / "report.json").read_text())
    for key in REPORT_KEYS:
        assert key in written, key
    assert written["report"]["certified_error"] == result.certified_error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # figures=False


@pytest.mark.slow
def test_training_does_not_depend_on_the_thread_count() -> None:
    data = digits_cnn.load_data(0)
    before = torch.get_num_threads()
    states = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model = digits_cnn.train_cnn(data, channels=(2, 4), epochs=5, seed=0)
            assert torch.get_num_threads() == threads  # the caller's setting is given back
            states.append(model.state_dict())
    finally:
        torch.set_num_threads(before)
    assert states[0].keys() == states[1].keys()
    for name, tensor in states[0].items():
        assert tensor.dtype == torch.float64
        assert torch.equal(tensor, states[1][name]), name  # bit for bit


def test_cnn_shape() -> None:
    model = digits_cnn.make_cnn((8, 16))
    x = torch.zeros(3, *digits_cnn.INPUT_SHAPE)
    assert model(x).shape == (3, 10)
    assert model[-1].in_features == 64
