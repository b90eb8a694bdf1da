"""Sizes are checked before anything is allocated (issue 23): absurd widths, input shapes and
limits given to ``plan``, ``prune`` or the command line end in one sslth error line, in a
process whose address space is capped at its import size plus 2 GiB (tests/absurd_sizes.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sslth.sizes
from sslth.certificate import _landmarks
from sslth.construct import PairSpec
from sslth.errors import TargetError
from sslth.kinds import Conv2d
from sslth.sizes import check_random_params, pair_params

ROOT = Path(__file__).resolve().parent.parent


def _capped(*args: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "absurd_sizes.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.slow
def test_a_300x300_conv_ticket_is_evaluated_within_2_gib():
    last = _capped("--slow")[-1]
    assert last["case"] == "a 1x300x300 conv ticket evaluated"
    assert last["outcome"] == "ok", last


@pytest.mark.slow
def test_absurd_sizes_are_refused_in_one_line_within_2_gib():
    results = _capped()
    assert len(results) == 26
    crashes = [r for r in results if r["outcome"] == "crash"]
    assert not crashes, crashes
    refused = [r for r in results if r["outcome"] == "refused"]
    assert len(refused) == 24  # all but a huge max_random_params and the landmarks
    for result in refused:
        assert len(result["message"].splitlines()) == 1, result
    assert any("too large to hold" in r["message"] for r in refused)
    assert any("too large to certify" in r["message"] for r in refused)


@pytest.mark.parametrize("d_in, d_out, bias", [(1, 1, False), (3, 5, True), (7, 2, False)])
def test_pair_params_is_the_specs_dense_count(d_in, d_out, bias):
    assert pair_params(d_in, d_out, 1, bias, 1) == PairSpec(d_in, d_out, 1, bias, 0).dense_params
    assert pair_params(d_in, d_out, 1, bias, 4) == PairSpec(d_in, d_out, 4, bias, 0).dense_params
    conv = Conv2d((3, 2), in_hw=(6, 6))
    spec = PairSpec(d_in, d_out, 2, bias, 0, conv)
    assert pair_params(d_in, d_out, 6, bias, 2) == spec.dense_params


def test_the_smallest_pair_is_compared_with_the_limit():
    needed = pair_params(10, 4, 1, True, 1)
    check_random_params([("layer 1", 10, 4, 1, True)], needed)  # exactly at the limit: fine
    with pytest.raises(TargetError, match=f"n = 1 pair has {needed:,} weights, over max_"):
        check_random_params([("layer 1", 10, 4, 1, True)], needed - 1)


def test_an_example_over_the_limit_is_refused_by_the_target(monkeypatch):
    # the limit lowered to 4 MiB: the same check, without probing a 1-GiB image (~17 GB)
    monkeypatch.setattr(sslth.sizes, "MAX_EXAMPLE_BYTES", 2**22)
    side = int((2**22 / 8 / 2) ** 0.5) + 1  # a 1-channel image whose hidden layer
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1, bias=False))  # (2 channels) is over
    with pytest.raises(TargetError, match="hidden layer of random pair 1"):
        sslth.as_target(model, input_shape=[1, side, side])
    sslth.as_target(model, input_shape=[1, side - 1, side - 1])  # just under: taken


@pytest.mark.parametrize("dim", [1, 5, 64, 65, 300])
def test_landmarks_are_the_rows_of_the_identity_they_replace(dim):
    eye = torch.eye(dim, dtype=torch.float64)[: min(dim, 64)] * 0.7
    old = torch.cat([torch.zeros(1, dim, dtype=torch.float64), eye, -eye])
    new = _landmarks(dim, 0.7)
    assert torch.equal(new, old) and torch.equal(new.signbit(), old.signbit())


def test_the_l_plus_1_construction_is_held_to_its_own_smallest_size():
    layers = [("layer 1", 10, 4, 1, True)]
    check_random_params(layers, 40, "l+1")  # 10 x 4: its random module has at least that
    with pytest.raises(TargetError, match="l\\+1 random module has at least 40 weights"):
        check_random_params(layers, 39, "l+1")
