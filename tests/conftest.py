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


# Checks kept out of the fast tier (``-m "not slow"``) for its one-minute budget: each ran
# 0.5-3.6 s on 2 idle cores (``--durations``, 4 December 2026) and either has a faster sibling
# in the tier (another case, or a smaller test of the same code) or is an end-to-end figure or
# sweep. The whole suite runs every one of them.
SLOW_FOR_THE_FAST_TIER = {
    "tests/test_reference.py::test_planted_bugs_are_caught",
    "tests/test_lplus1.py::test_masks_figure_and_error_histogram[bias]",
    "tests/test_lplus1.py::test_masks_figure_and_error_histogram[no-bias]",
    "tests/test_sparse_kernel.py::test_kernel_is_what_gets_certified_and_attacked[conv]",
    "tests/test_sizing.py::test_the_peak_bound_never_changes_a_size",
    "tests/test_verify_agreement.py::test_random_evaluated_tickets_verify",
    "tests/test_modules.py::test_a_dressed_ticket_layer_is_refused[module.compile()]",
    "tests/test_sparse_soundness.py::test_sparse_float32_never_exceeds_its_certificate[3]",
    "tests/test_search.py::test_a_prune_options_passes_whole_and_gives_the_same_ticket",
    "tests/test_subset_sum.py::test_rows_of_mixed_counts_get_the_picks_they_get_alone[3]",
    "tests/test_edge_popup.py::test_random_weights_stay_frozen_and_the_network_is_untouched",
    "tests/test_search.py::test_worker_count_does_not_change_the_ticket",
    "tests/test_certificate.py::test_interior_sample_points_fill_the_ball",
    "tests/test_trust.py::test_huge_radius_is_certified_in_the_modules_dtype[1000.0]",
    "tests/test_sparse_kernel.py::test_float64_ticket_kernel_matches[conv]",
    "tests/test_sparse_kernel.py::test_kernel_matches_the_torch_layout[conv-float64]",
    "tests/test_reference.py::test_certificate_matches_reference[1]",
    "tests/test_rounding_floor.py::test_certificate_confirms_the_planned_tolerances[1]",
    "tests/test_graph.py::test_attack_does_not_beat_graph_certificates[4-float64]",
    "tests/test_core.py::test_certified_error_within_epsilon_when_parameters_allow[1]",
    "tests/test_core.py::test_compact_export_is_the_same_function_with_fewer_units[False]",
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.nodeid in SLOW_FOR_THE_FAST_TIER:
            item.add_marker(pytest.mark.slow)
