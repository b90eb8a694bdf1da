"""The search's output is pinned: the golden tickets' masks and report figures (tests/golden.py).

A deliberate change of the search, the solver or the certificate re-records them with
``python -m tests.golden --write`` and says why in its commit; anything else that moves them is
a regression.
"""

import json

import pytest

from tests.golden import GOLDEN, build, cases

STORED = json.loads(GOLDEN.read_text())
CASES = cases()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=() if fast else pytest.mark.slow)
        for name, (_, _, fast) in CASES.items()
    ],
)
def test_golden_ticket_is_unchanged(name):
    target, kwargs, _ = CASES[name]
    assert build(name, target, kwargs) == STORED[name]


def test_every_golden_case_is_recorded():
    assert set(CASES) == set(STORED)
