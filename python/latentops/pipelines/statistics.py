"""Statistics over seeds that the reports and benchmarks share: medians with quartiles, and paired
differences with the two-sided Wilcoxon signed-rank test (scipy), with Holm's correction when a
table makes several comparisons at once."""

from __future__ import annotations

import numpy as np


def quartiles(values, scale: float = 100.0, digits: int = 1) -> str:
    """'median [first quartile, third quartile]' of values × scale (accuracies in %), or '–'."""
    values = list(values)
    if not values:
        return "–"
    q1, median, q3 = np.percentile(np.asarray(values, dtype=float) * scale, [25, 50, 75])
    return f"{median:.{digits}f} [{q1:.{digits}f}, {q3:.{digits}f}]"


def paired_test(a: dict, b: dict) -> tuple[float, float, int] | None:
    """(median of a[s] − b[s], two-sided Wilcoxon signed-rank p, n) over the seeds both have;
    None when they share none. All differences zero: p = 1."""
    from scipy.stats import wilcoxon

    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diff = np.array([a[s] - b[s] for s in seeds], dtype=float)
    p = 1.0 if not np.any(diff) else float(wilcoxon(diff).pvalue)
    return float(np.median(diff)), p, len(seeds)


def paired(a: dict, b: dict, scale: float = 100.0, digits: int = 1) -> str:
    """paired_test as a table cell: '+1.2 (p = 0.0391, n = 8)' (points when scale is 100), or '–'."""
    test = paired_test(a, b)
    if test is None:
        return "–"
    median, p, n = test
    return f"{scale * median:+.{digits}f} (p = {p:.3g}, n = {n})"


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the order given."""
    order = np.argsort(p_values)
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()
