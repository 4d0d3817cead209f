"""The shared statistics over seeds: quartiles, paired Wilcoxon tests and Holm's correction,
against hand-computed cases."""

import pytest

from latentops.pipelines.statistics import holm, paired, paired_test, quartiles


def test_quartiles_scale_and_digits():
    assert quartiles([0.1, 0.2, 0.3, 0.4, 0.5]) == "30.0 [20.0, 40.0]"
    assert quartiles([0.01, 0.02, 0.03], scale=1.0, digits=3) == "0.020 [0.015, 0.025]"
    assert quartiles([]) == "–"


def test_paired_test_pairs_by_seed():
    a = {0: 0.9, 1: 0.8, 2: 0.7, 3: 0.95, 9: 0.5}
    b = {0: 0.8, 1: 0.75, 2: 0.5, 3: 0.9}  # seed 9 has no partner
    median, p, n = paired_test(a, b)
    assert n == 4 and median == pytest.approx(0.075)
    # Four positive differences of distinct sizes: the exact two-sided p is 2 / 2^4.
    assert p == pytest.approx(0.125)
    assert paired(a, b) == "+7.5 (p = 0.125, n = 4)"
    assert paired_test(a, {7: 1.0}) is None and paired(a, {}) == "–"
    assert paired_test({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6})[1] == 1.0


def test_holm_by_hand():
    # Sorted 0.01, 0.02, 0.04 times 3, 2, 1 = 0.03, 0.04, 0.04 (kept monotone), in the input order.
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
