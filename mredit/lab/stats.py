"""Mean and Student-t confidence interval over a handful of seeds, without scipy.

The t distribution's two-sided probability for integer degrees of freedom has a closed form
(Abramowitz & Stegun 26.7.3-4), so the quantile is found by bisection on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def t_two_sided_probability(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's t with ``dof`` degrees of freedom (t >= 0)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    theta = math.atan(t / math.sqrt(dof))
    c2 = math.cos(theta) ** 2
    if dof % 2 == 1:
        series, term = 0.0, math.cos(theta)
        for k in range(1, (dof - 1) // 2 + 1):  # cos + 2/3 cos^3 + (2*4)/(3*5) cos^5 + ...
            series += term
            term *= c2 * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + math.sin(theta) * series) if dof > 1 else 2 * theta / math.pi
    series, term = 0.0, 1.0
    for k in range(1, dof // 2 + 1):  # 1 + 1/2 cos^2 + (1*3)/(2*4) cos^4 + ...
        series += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * series


def t_critical(dof: int, confidence: float = 0.95) -> float:
    """The t value with P(|T| <= t) = confidence."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    low, high = 0.0, 1.0
    while t_two_sided_probability(high, dof) < confidence:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_two_sided_probability(mid, dof) < confidence else (low, mid)
    return (low + high) / 2


def mean_confidence_interval(values: Sequence[float], confidence: float = 0.95) -> dict:
    """``{"mean", "ci": [lo, hi] or None, "std", "n"}``; the t-interval needs at least two values."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to aggregate")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return {"mean": mean, "ci": None, "std": None, "n": 1}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_critical(n - 1, confidence) * std / math.sqrt(n)
    return {"mean": mean, "ci": [mean - half, mean + half], "std": std, "n": n}
