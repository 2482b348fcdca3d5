"""ablate.report.stats against known answers: published values (Student's sleep data, Student t and power
tables), hand enumeration of sign patterns, a worked Holm example, and the formulas written out here."""

import itertools
import math
import statistics

import numpy as np
import pytest
from report_helpers import T_975

from ablate.report.stats import (
    MAX_SIGN_FLIP_PAIRS, holm, paired_power, paired_t_pvalue, paired_test, seeds_needed, sign_flip_pvalue, spearman,
    t_interval,
)

# Student (1908) / Cushny & Peebles: extra hours of sleep under two drugs, the same 10 patients (R's `sleep` data).
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_interval_is_mean_plus_minus_t_times_standard_error():
    assert t_interval([1.0, 2.0, 3.0]) == pytest.approx((2 - T_975[2] / math.sqrt(3), 2 + T_975[2] / math.sqrt(3)), rel=1e-13)
    values = [85.1, 86.9, 84.7, 86.2]
    half = T_975[3] * statistics.stdev(values) / 2
    assert t_interval(values) == pytest.approx((statistics.mean(values) - half, statistics.mean(values) + half), rel=1e-12)
    # two seeds: t(0.975, 1) = 12.7, the interval is wide
    assert t_interval([60.0, 62.0]) == pytest.approx((61 - T_975[1], 61 + T_975[1]), rel=1e-12)
    assert all(math.isnan(x) for x in t_interval([5.0])) and all(math.isnan(x) for x in t_interval([]))


def test_paired_t_on_the_sleep_data_is_students_published_value():
    # R: t.test(extra ~ group, data = sleep, paired = TRUE): t = -4.0621, df = 9, p-value = 0.002833
    assert paired_t_pvalue(SLEEP_2, SLEEP_1) == pytest.approx(0.002833, abs=5e-7)
    from scipy.stats import t as student

    d = [b - a for a, b in zip(SLEEP_1, SLEEP_2)]
    t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(len(d)))
    assert t == pytest.approx(4.0621, abs=5e-5)
    assert paired_t_pvalue(SLEEP_2, SLEEP_1) == pytest.approx(2 * student.sf(t, len(d) - 1), rel=1e-10)
    assert paired_t_pvalue(SLEEP_1, SLEEP_2) == paired_t_pvalue(SLEEP_2, SLEEP_1)  # two-sided


def test_paired_t_degenerate_cases():
    assert math.isnan(paired_t_pvalue([1.0], [2.0]))  # one pair: no spread to test against
    assert paired_t_pvalue([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0  # nothing differs
    assert paired_t_pvalue([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]) == 0.0  # the same difference every time: t → ∞
    assert paired_t_pvalue([60.1, 61.6, 59.4], [59.6, 61.1, 58.9]) == 0.0  # equal up to rounding counts as equal
    with pytest.raises(ValueError, match="same length"):
        paired_t_pvalue([1.0, 2.0], [1.0])


def by_hand_sign_flip(differences):
    """Every sign pattern written out: the share whose |sum| reaches the observed |sum|."""
    observed = abs(sum(differences))
    patterns = list(itertools.product([1, -1], repeat=len(differences)))
    return sum(abs(sum(s * d for s, d in zip(signs, differences))) >= observed - 1e-9 for signs in patterns) / len(patterns)


def test_sign_flip_p_is_the_share_of_sign_patterns_at_least_as_extreme():
    # d = 1, 2, 3: the 8 sums are ±6, ±4, ±2, 0, 0; only +6 and −6 reach |6|
    assert sign_flip_pvalue([1.0, 2.0, 3.0]) == 2 / 8
    # d = 1, −2, 4: sums 3, −1 (flip 1), 7 (flip −2), 5, −5, −7, 1, −3 → |sum| ≥ 3 for 3, 7, 5, −5, −7, −3
    assert sign_flip_pvalue([1.0, -2.0, 4.0]) == 6 / 8
    assert sign_flip_pvalue([0.0, 0.0, 1.0]) == 1.0  # flipping a zero changes nothing: every pattern reaches |1|
    d = [b - a for a, b in zip(SLEEP_1, SLEEP_2)]
    assert sign_flip_pvalue(d) == by_hand_sign_flip(d)
    rng = np.random.default_rng(7)
    for n in (2, 5, 9):
        d = list(rng.normal(0.4, 1.0, n))
        assert sign_flip_pvalue(d) == by_hand_sign_flip(d)
    assert math.isnan(sign_flip_pvalue([1.0]))


def test_sign_flip_enumerates_in_chunks_and_refuses_too_many_pairs():
    d = [1.0] * 17  # 2^17 patterns, more than one chunk: only all-plus and all-minus reach |17|
    assert sign_flip_pvalue(d) == 2 / 2**17
    with pytest.raises(ValueError, match="2\\^n"):
        sign_flip_pvalue([1.0] * (MAX_SIGN_FLIP_PAIRS + 1))
    big = paired_test([1.0] * (MAX_SIGN_FLIP_PAIRS + 1), [0.5] * (MAX_SIGN_FLIP_PAIRS + 1))
    assert math.isnan(big.sign_flip_p) and big.t_p == 0.0


def test_holm_on_a_worked_example():
    # p = .01, .04, .03, .005 (m = 4). Sorted: .005·4 = .02, .01·3 = .03, .03·2 = .06, .04·1 = .04 → running max .06
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02], rel=1e-12)
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]  # 2·0.5 = 1, then max(1, 0.6): capped at 1
    assert holm([0.02]).tolist() == [0.02]  # one test: nothing to correct
    adjusted = holm([0.01, float("nan"), 0.02])  # a test not made counts for nothing: m = 2
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([]).size == 0


def test_holm_lies_between_the_raw_p_and_bonferroni():
    p = np.random.default_rng(3).uniform(0, 0.2, 12)
    adjusted = holm(p)
    assert (adjusted >= p).all() and (adjusted <= np.minimum(1, 12 * p) + 1e-15).all()


def test_paired_test_pairs_differences():
    test = paired_test([3.0, 5.0, 4.0], [1.0, 2.0, 2.5])
    assert test.differences == (2.0, 3.0, 1.5) and test.n == 3 and test.testable
    assert test.mean == pytest.approx(statistics.mean([2.0, 3.0, 1.5]))
    assert test.std == pytest.approx(statistics.stdev([2.0, 3.0, 1.5]))
    assert test.sign_flip_p == 2 / 8
    one = paired_test([3.0], [1.0])
    assert not one.testable and math.isnan(one.std) and math.isnan(one.t_p) and math.isnan(one.sign_flip_p)


def test_spearman_is_the_rank_correlation():
    # ranks of y against x = 1..5: d = 1, −1, 1, −1, 0 → ρ = 1 − 6·Σd²/(n(n²−1)) = 1 − 24/120 = 0.8
    rho, p = spearman([1, 2, 3, 4, 5], [2.0, 1.0, 4.0, 3.0, 5.0])
    assert rho == pytest.approx(0.8, rel=1e-12)
    from scipy.stats import t as student

    t = 0.8 * math.sqrt(3 / (1 - 0.64))  # scipy's p: t = ρ·√((n−2)/(1−ρ²)) on n − 2 degrees of freedom
    assert p == pytest.approx(2 * student.sf(t, 3), rel=1e-9)
    assert spearman([0.125, 0.25, 0.5, 1.0], [60.0, 61.0, 62.5, 63.0])[0] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in spearman([1, 2], [1.0, 2.0]))  # fewer than 3 points
    assert all(math.isnan(v) for v in spearman([1, 1, 1], [1.0, 2.0, 3.0]))  # no spread in x


@pytest.mark.parametrize("effect, n", [(0.5, 34), (0.8, 15), (1.0, 10)])
def test_seeds_needed_matches_power_tables(effect, n):
    """One-sample / paired t-test, α 0.05 two-sided, power 0.8: Cohen (1988) and G*Power give n = 34 for an effect
    d = δ/σ of 0.5, 15 for 0.8 and 10 for 1.0."""
    assert seeds_needed(effect, 1.0) == n
    assert seeds_needed(3 * effect, 3.0) == n  # only the ratio counts
    assert paired_power(n, effect, 1.0) >= 0.8 > paired_power(n - 1, effect, 1.0)


def test_power_agrees_with_simulated_paired_t_tests():
    """The noncentral t power against simulated experiments: n pairs with differences ~ N(δ, σ²), the t statistic by
    hand, rejected where |t| > t(0.975, n − 1)."""
    rng = np.random.default_rng(11)
    for n, delta in ((4, 2.0), (10, 1.0)):
        d = rng.normal(delta, 1.0, size=(40_000, n))
        t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
        simulated = float((np.abs(t) > T_975[n - 1]).mean())
        assert paired_power(n, delta, 1.0) == pytest.approx(simulated, abs=0.01)


def test_seeds_needed_without_a_usable_spread():
    assert seeds_needed(1.0, 0.0) is None and seeds_needed(1.0, float("nan")) is None
    assert seeds_needed(0.0, 1.0) is None
    assert seeds_needed(0.01, 10.0, max_seeds=50) is None  # would need far more than 50


def test_power_stays_a_number_for_large_effects_and_grows_with_the_seeds():
    """Large effects put the lower rejection tail far out (scipy 1.17's nct.cdf gives NaN there, e.g. df 3, nc 10):
    the power must still be a probability, and must not fall as seeds are added (a NaN once made seeds_needed skip
    n = 3 and n = 4 for a 10-point difference with paired std 1.98)."""
    for std in (0.5, 1.98, 3.75):
        powers = [paired_power(n, 10.0, std) for n in range(2, 12)]
        assert all(0.0 <= p <= 1.0 for p in powers), powers
        assert powers == sorted(powers)
    assert seeds_needed(10.0, 1.98) == 3  # power at n = 3 is 0.977 (simulated below); at n = 2 it is 0.43
    rng = np.random.default_rng(3)
    d = rng.normal(10.0, 1.98, size=(40_000, 3))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(3))
    assert paired_power(3, 10.0, 1.98) == pytest.approx(float((np.abs(t) > T_975[2]).mean()), abs=0.01)
