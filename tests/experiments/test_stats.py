import math

import pytest

from mredit.lab.stats import mean_confidence_interval, t_critical, t_two_sided_probability

# Two-sided 95% (and one 90%) Student-t critical values from standard tables.
TABLE = {(1, 0.95): 12.7062, (2, 0.95): 4.3027, (3, 0.95): 3.1824, (4, 0.95): 2.7764, (9, 0.95): 2.2622,
         (30, 0.95): 2.0423, (4, 0.90): 2.1318}  # fmt: skip


@pytest.mark.parametrize(("dof", "confidence"), sorted(TABLE))
def test_t_critical_matches_tables(dof, confidence):
    assert t_critical(dof, confidence) == pytest.approx(TABLE[(dof, confidence)], abs=1e-4)


def test_probability_is_monotone_and_bounded():
    values = [t_two_sided_probability(t, 5) for t in (0.0, 0.5, 1.0, 2.0, 10.0, 1e6)]
    assert values[0] == 0.0 and values == sorted(values) and values[-1] == pytest.approx(1.0)


def test_interval_from_three_seeds():
    result = mean_confidence_interval([0.4, 0.5, 0.6])
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert result["mean"] == pytest.approx(0.5) and result["n"] == 3 and result["std"] == pytest.approx(0.1)
    assert result["ci"] == pytest.approx([0.5 - half, 0.5 + half])


def test_single_value_has_no_interval_and_empty_is_an_error():
    assert mean_confidence_interval([0.3]) == {"mean": 0.3, "ci": None, "std": None, "n": 1}
    with pytest.raises(ValueError, match="no values"):
        mean_confidence_interval([])
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_critical(0)
