"""The operator counter behind ``bench_prune.py --count-ops`` and the search's operator bound."""

import pytest
import torch

from sslth.opcount import OperatorCounter


@pytest.mark.slow
def test_counter_counts_operators_and_sync_like_ones_by_name():
    x = torch.arange(10.0)
    with OperatorCounter() as counter:
        y = x * 2 + 1
        picked = y[y > 5]  # a boolean mask: the host must read how many were kept
        where = (y > 5).nonzero()
        float(y.sum())
    assert picked.numel() == where.shape[0] == 7
    assert counter.by_name["mul"] == 1 and counter.by_name["add"] == 1
    assert counter.sync_by_name["index[bool]"] == 1
    assert counter.sync_by_name["nonzero"] == 1
    assert counter.sync_by_name["_local_scalar_dense"] == 1
    assert counter.syncs == 3
    assert counter.total == sum(counter.by_name.values()) >= 8
    assert "host-sync-like" in counter.summary()


def test_counter_sees_only_its_own_thread():
    import threading

    with OperatorCounter() as counter:
        thread = threading.Thread(target=lambda: torch.ones(3).add_(1))
        thread.start()
        thread.join()
    assert counter.total == 0


def _layer_operators(d_in: int) -> tuple[int, int]:
    from sslth.construct import PairSpec
    from sslth.search.layer import solve_layer
    from sslth.target import as_target

    generator = torch.Generator().manual_seed(d_in)
    weight = torch.randn(6, d_in, generator=generator) / d_in**0.5
    layer = as_target([(weight, 0.1 * torch.randn(6, generator=generator))]).layers[0]
    spec = PairSpec(d_in, 6, 10, True, 3)
    with OperatorCounter() as counter:
        solution = solve_layer(
            spec, layer, 3, 1e-3, index=0, device=torch.device("cpu"), solver="auto"
        )
        solution.masks()
        solution.operator()
    return counter.total, counter.syncs


def test_a_layer_solve_launches_operators_per_chunk_not_per_block():
    """Four times the blocks (64 → 256 inputs, one chunk either way) cost only the two draws
    per block (U's diagonal, V's columns): the layout, the solve and the bookkeeping are
    batched. Per-block bookkeeping cost ~100 operators a block before (26,000 more here)."""
    small, small_syncs = _layer_operators(64)
    large, large_syncs = _layer_operators(256)
    assert large <= small + 3 * (256 - 64) + 200
    assert large_syncs <= small_syncs + 20
    assert large <= 8_000 and large_syncs <= 1_000


def test_targets_are_read_under_the_counter_but_not_under_another_dispatch_mode():
    """The counter passes every operator through unchanged, so a prune can be counted
    (``bench_prune.py --count-ops``); any other dispatch mode may change what the target's
    forward computes, and is refused (sslth.modules)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from sslth.errors import UnsupportedTargetError
    from sslth.target import as_target

    class Passing(TorchDispatchMode):  # same behaviour, but not sslth's counter
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with OperatorCounter() as counter:
        assert len(as_target(model).layers) == 2
    assert counter.total > 0
    with Passing(), pytest.raises(UnsupportedTargetError, match="DispatchMode"):
        as_target(model)

    class Subclass(OperatorCounter):
        pass

    with Subclass(), pytest.raises(UnsupportedTargetError, match="DispatchMode"):
        as_target(model)

    def shifted(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        return out + 1 if isinstance(out, torch.Tensor) and out.is_floating_point() else out

    patched_instance = OperatorCounter()
    patched_instance.__torch_dispatch__ = shifted.__get__(patched_instance)
    with patched_instance, pytest.raises(UnsupportedTargetError, match="DispatchMode"):
        as_target(model)
    original = OperatorCounter.__torch_dispatch__
    OperatorCounter.__torch_dispatch__ = shifted
    try:
        with OperatorCounter(), pytest.raises(UnsupportedTargetError, match="DispatchMode"):
            as_target(model)
    finally:
        OperatorCounter.__torch_dispatch__ = original


def _exact_operators(spread: int) -> int:
    from sslth.subset_sum import solve

    generator = torch.Generator().manual_seed(5)
    values = torch.randn(600, 24, generator=generator, dtype=torch.float64)
    valid = torch.arange(24) < (24 - torch.arange(600) % spread)[:, None]
    targets = torch.randn(600, generator=generator, dtype=torch.float64)
    with OperatorCounter() as counter:
        solve(values, targets, 4, 1e-3, valid=valid, method="exact")
    return counter.total


def test_the_exact_search_launches_operators_per_split_not_per_candidate_count():
    """Rows of 12 different candidate counts cost about what rows of 2 do: the meet in the
    middle searches every count in one call (one call per (k, n) cost 4.5x here)."""
    few, many = _exact_operators(2), _exact_operators(12)
    assert many <= 1.8 * few
