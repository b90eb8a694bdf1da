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
