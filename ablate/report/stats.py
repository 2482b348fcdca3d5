"""The statistics behind reports: intervals, paired tests, their correction, trends and seeds needed.

Pure functions on arrays of numbers (computed in float64); reports pair cells by seed and call these.
Seeds of one grid are paired (same seed: same data order and initial weights where the spec allows),
so two cells are compared through their per-seed differences d_i = a_i − b_i, i = 1..n:

    interval      mean ± t_{(1+c)/2, n−1} · s/√n                     Student's t interval, s = sample std (ddof 1)
    paired t      t = mean(d) / (s_d/√n), two-sided p from t_{n−1}   scipy.stats.ttest_rel
    sign flip     p = #{ε ∈ {±1}^n : |Σ ε_i d_i| ≥ |Σ d_i|} / 2^n    exact permutation test (Fisher 1935):
                  under "no difference" each d_i is as likely −d_i, so every sign pattern is equally likely
    Holm          adjusted p_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j)) over the m sorted p-values
                  (Holm 1979: controls the family-wise error rate at α, uniformly more powerful than Bonferroni)
    Spearman      ρ = Pearson correlation of the ranks, p from scipy.stats.spearmanr (t approximation)
    seeds needed  the least n with power(n) ≥ 0.8, power(n) = P(|T| > t_{1−α/2, n−1}), T ~ noncentral t with
                  n − 1 degrees of freedom and noncentrality δ√n/σ_d (δ the difference to tell, σ_d the
                  std of the paired differences): scipy.stats.nct

Holm is written here because scipy has none (scipy.stats.false_discovery_control does Benjamini–Hochberg /
Benjamini–Yekutieli, which control the false discovery rate, not the family-wise error rate); statsmodels'
multipletests has it, but is a large dependency for ten lines.

With fewer than two pairs there is no spread to test against: the tests return NaN and reports say
"not enough seeds". The exact sign-flip test cannot go below 2/2^n (0.25 with 3 seeds, 0.0625 with 5):
with few seeds it never rejects at α = 0.05, which is what it should say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.8
MAX_SIGN_FLIP_PAIRS = 20  # 2^20 ≈ 10^6 sign patterns: enumerated in chunks in well under a second
MAX_SEEDS = 1000  # seeds_needed gives up beyond this (None)
_CHUNK = 1 << 15  # sign patterns per chunk of the enumeration

Numbers = Sequence[float] | np.ndarray


def as_float64(values: Numbers) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def t_interval(values: Numbers, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student's t interval of the mean: mean ± t_{(1+c)/2, n−1} · s/√n; (NaN, NaN) when n < 2."""
    x = as_float64(values)
    if x.size < 2:
        return math.nan, math.nan
    half = scipy_stats.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    mean = float(x.mean())
    return mean - float(half), mean + float(half)


def paired_t_pvalue(a: Numbers, b: Numbers) -> float:
    """Two-sided p of the paired t-test of a against b (scipy.stats.ttest_rel); NaN with fewer than 2 pairs.

    Differences without spread (s_d = 0, or below rounding: 1e-12 of their size) make t = mean/0: p = 1
    when they are all 0 (nothing differs), p = 0 when they are all the same non-zero number (the limit
    t → ∞), where scipy would return NaN or warn of catastrophic cancellation.
    """
    x, y = as_float64(a), as_float64(b)
    if x.shape != y.shape:
        raise ValueError(f"paired samples need the same length, got {x.size} and {y.size}")
    if x.size < 2:
        return math.nan
    d = x - y
    if np.ptp(d) <= 1e-12 * max(float(np.abs(d).max()), 1.0):
        return 1.0 if np.abs(d).max() <= 1e-12 else 0.0
    return float(scipy_stats.ttest_rel(x, y).pvalue)


def sign_flip_pvalue(differences: Numbers) -> float:
    """Exact two-sided sign-flip (paired permutation) p-value of the mean difference being 0.

    Every one of the 2^n sign patterns ε is enumerated; p is the share whose |Σ ε_i d_i| reaches the
    observed |Σ d_i| (the observed pattern and its mirror image included, so p ≥ 2/2^n). Sums equal up to
    rounding count as reaching it. NaN with fewer than 2 differences; ValueError beyond
    MAX_SIGN_FLIP_PAIRS (2^n patterns).
    """
    d = as_float64(differences)
    n = d.size
    if n < 2:
        return math.nan
    if n > MAX_SIGN_FLIP_PAIRS:
        raise ValueError(f"the exact sign-flip test enumerates 2^n patterns; n = {n} > {MAX_SIGN_FLIP_PAIRS}")
    observed = abs(float(d.sum()))
    tolerance = 1e-9 * max(float(np.abs(d).sum()), 1e-300)
    bits = np.arange(n)
    reaching = 0
    for start in range(0, 1 << n, _CHUNK):
        patterns = np.arange(start, min(start + _CHUNK, 1 << n))
        signs = 1 - 2 * ((patterns[:, None] >> bits) & 1)  # bit i set: d_i flipped
        reaching += int((np.abs(signs @ d) >= observed - tolerance).sum())
    return reaching / float(1 << n)


def holm(pvalues: Numbers) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the order given; NaN entries (tests not made) stay NaN and are
    not counted in m. A hypothesis is rejected at family-wise level α when its adjusted p < α."""
    p = as_float64(pvalues)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = tested.size
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):  # rank 0 is the smallest p: multiplied by m, the next by m − 1, ...
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class PairedTest:
    """Two cells compared over their shared seeds: the differences and both tests' raw p-values."""

    differences: tuple[float, ...]
    t_p: float
    sign_flip_p: float

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def testable(self) -> bool:
        return self.n >= 2

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences)) if self.differences else math.nan

    @property
    def std(self) -> float:
        """Sample std (ddof 1) of the paired differences: the spread the t-test and seeds_needed use."""
        return float(np.std(self.differences, ddof=1)) if self.n >= 2 else math.nan


def paired_test(a: Numbers, b: Numbers) -> PairedTest:
    """a against b, pair by pair (a[i] and b[i] share a seed): the paired t-test and the exact sign-flip test."""
    x, y = as_float64(a), as_float64(b)
    d = x - y
    flip = sign_flip_pvalue(d) if d.size <= MAX_SIGN_FLIP_PAIRS else math.nan
    return PairedTest(tuple(float(v) for v in d), paired_t_pvalue(x, y), flip)


def spearman(x: Numbers, y: Numbers) -> tuple[float, float]:
    """Spearman's ρ of y against x and its two-sided p (scipy.stats.spearmanr); NaNs with fewer than 3 points
    or when either side is constant (no ranks to correlate)."""
    u, v = as_float64(x), as_float64(y)
    if u.size < 3 or np.ptp(u) == 0 or np.ptp(v) == 0:
        return math.nan, math.nan
    result = scipy_stats.spearmanr(u, v)
    return float(result.statistic), float(result.pvalue)


def paired_power(n: int, difference: float, std: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n pairs to find a true mean difference `difference` when the
    paired differences have std `std`: P(|T| > t_{1−α/2, n−1}), T ~ nct(df = n − 1, nc = difference·√n/std)."""
    df = n - 1
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)
    noncentrality = difference * math.sqrt(n) / std
    # The lower tail as the upper tail of the mirrored distribution, P(T_nc < −c) = P(T_−nc > c): scipy 1.17's
    # nct.cdf returns NaN far in a tail (e.g. df 3, nc 10), where the upper-tail function returns the tiny value.
    upper = scipy_stats.nct.sf(critical, df, noncentrality)
    lower = scipy_stats.nct.sf(critical, df, -noncentrality)
    return float(upper + lower)


def seeds_needed(difference: float, std: float, alpha: float = ALPHA, power: float = POWER,
                 max_seeds: int = MAX_SEEDS) -> int | None:
    """The least number of paired seeds (≥ 2) whose paired t-test finds `difference` with the given power, for
    paired differences of std `std`; None when std is not a positive number or more than max_seeds are needed."""
    if not (math.isfinite(std) and std > 0 and math.isfinite(difference) and difference != 0):
        return None
    for n in range(2, max_seeds + 1):
        if paired_power(n, abs(difference), std, alpha) >= power:
            return n
    return None
