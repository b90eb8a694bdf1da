"""Edge-popup (sslth/edge_popup.py) and the baseline script's quick form (issue 21)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sslth.edge_popup import EdgePopup, allocate
from sslth.errors import ConfigError


def _random(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3, bias=False)).double()


def _batches(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randn(32, 4, generator=generator, dtype=torch.float64)
        yield x, (x[:, :3] > 0).long().sum(1) % 3


@pytest.mark.parametrize("kept", [3, 17, 50, 100])
def test_allocation_sums_to_the_request_in_proportion(kept):
    sizes = [64, 16, 48]
    counts = allocate(sizes, kept)
    assert sum(counts) == kept
    for size, count in zip(sizes, counts, strict=True):
        assert abs(count - kept * size / sum(sizes)) < 1


@pytest.mark.slow
def test_masks_keep_exactly_the_given_count_before_and_after_training():
    model = EdgePopup(_random(), 40)
    assert sum(int(m.sum()) for m in model.masks() if m is not None) == 40 == model.kept
    before = [m.clone() for m in model.masks() if m is not None]
    model.train_scores(nn.functional.cross_entropy, _batches(), 12, lr=0.5)
    after = [m for m in model.masks() if m is not None]
    assert sum(int(m.sum()) for m in after) == 40
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # it learned
    assert model.total == 4 * 16 + 16 + 16 * 3


def test_random_weights_stay_frozen_and_the_network_is_untouched():
    network = _random()
    state = {k: v.clone() for k, v in network.state_dict().items()}
    model = EdgePopup(network, 40)
    frozen = [None if t is None else t.clone() for t in model.frozen]
    model.train_scores(nn.functional.cross_entropy, _batches(), 10)
    for a, b in zip(frozen, model.frozen, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    for key, value in network.state_dict().items():
        assert torch.equal(value, state[key])


@pytest.mark.slow
def test_training_is_deterministic():
    runs = []
    for _ in range(2):
        model = EdgePopup(_random(), 40, seed=3)
        losses = model.train_scores(nn.functional.cross_entropy, _batches(1), 20)
        runs.append((losses, [m for m in model.masks() if m is not None]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


def test_a_count_that_empties_a_layer_is_refused_before_training():
    with pytest.raises(ConfigError, match="no weight"):
        EdgePopup(_random(), 1)  # 1 of 128 entries: the 48-entry layer gets none
    with pytest.raises(ConfigError, match="Conv2d"):
        EdgePopup(nn.Sequential(nn.Conv2d(1, 1, 1)), 1)


@pytest.mark.slow
def test_baseline_script_quick_form(tmp_path, one_thread):
    pytest.importorskip("sklearn")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "edge_popup_baseline.py"
    spec = importlib.util.spec_from_file_location("edge_popup_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--out", str(tmp_path), "--quick"])
    report = json.loads((tmp_path / "report.json").read_text())
    for key in (
        "target_accuracy",
        "sslth_ticket_accuracy",
        "edge_popup_accuracy",
        "sup_error",
        "density",
        "mask_overlap",
        "train_seconds",
        "planted",
    ):
        assert key in report
    assert report["kept"] == result.kept and report["density"] == result.kept / result.random_params
    sup = report["sup_error"]
    assert sup["sslth_ascent"] <= sup["sslth_certified"]
    assert 0.0 <= report["mask_overlap"] <= 1.0


def test_straight_through_gradient_carries_the_sign_of_the_score():
    # a larger |score| keeps an entry: for a negative score the loss's push to keep it must
    # make the score more negative (the first version missed the sign, and learnt nothing)
    model = EdgePopup(nn.Sequential(nn.Linear(2, 1, bias=False)).double(), 1)
    with torch.no_grad():
        model.frozen[0].copy_(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
        model.scores[0].copy_(torch.tensor([[0.5, -0.3]], dtype=torch.float64))
    out = model(torch.ones(1, 2, dtype=torch.float64))
    (-out.sum()).backward()  # larger output is better: keeping either entry helps
    grad = model.scores[0].grad[0]
    assert grad[0] < 0 and grad[1] > 0  # gradient descent grows 0.5 and makes -0.3 more negative


@pytest.mark.slow
def test_training_learns_a_learnable_task():
    torch.manual_seed(1)
    network = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3)).double()
    model = EdgePopup(network, 150, seed=0)
    generator = torch.Generator().manual_seed(2)

    def batches():
        while True:
            x = torch.randn(64, 4, generator=generator, dtype=torch.float64)
            yield x, x[:, :3].argmax(1)  # which of the first three inputs is largest

    losses = model.train_scores(nn.functional.cross_entropy, batches(), 60, lr=1.0)
    assert sum(losses[-10:]) < 0.9 * sum(losses[:10])
