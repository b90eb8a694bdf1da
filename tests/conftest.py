import random

import pytest
import torch


def random_target(rng: random.Random, *, depth: int, bias: bool = False, max_width: int = 6):
    """A random nn.Sequential target with spectral norm <= 1 per layer."""
    widths = [rng.randint(1, max_width) for _ in range(depth + 1)]
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    modules = []
    for i in range(depth):
        linear = torch.nn.Linear(widths[i], widths[i + 1], bias=bias)
        with torch.no_grad():
            w = torch.randn(widths[i + 1], widths[i], generator=generator)
            linear.weight.copy_(w / max(1.0, float(torch.linalg.matrix_norm(w, ord=2))))
            if bias:
                linear.bias.copy_(0.3 * torch.randn(widths[i + 1], generator=generator))
        modules.append(linear)
        if i < depth - 1:
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules)


@pytest.fixture
def rng():
    return random.Random(1234)


@pytest.fixture
def one_thread():
    """One torch thread, restored afterwards: on a busy 2-core machine torch's pool spins
    against the other processes, and small problems run several times faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def first_fast(values, keep: int = 1, *, unpack: bool = False) -> list:
    """Parametrize values with all but the first ``keep`` marked ``slow``: the fast tier
    (``pytest -m "not slow"``) runs a representative of a parametrized check, the whole suite
    runs every case. ``unpack``: each value is a tuple of several arguments."""
    return [
        value
        if index < keep
        else pytest.param(*(value if unpack else (value,)), marks=pytest.mark.slow)
        for index, value in enumerate(values)
    ]
