"""Base-vs-checkpoint statistics over paired validation rows: is a +0.05 real or noise?

Validation sets are small (15-200 rows), so the daemon reports, for each pair of steps, the mean difference
with a 95 % interval from a paired bootstrap over rows (seeded, so the same rows always give the same
interval) and the p-value of an exact two-sided sign test over the rows that changed. Pure standard library:
the daemon computes it from stored rows and never imports numpy.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

#: Bootstrap resamples by default (issue 11 asks for at least 2,000).
DEFAULT_RESAMPLES = 2000
#: The bootstrap's seed by default: the same rows give the same interval on every call.
DEFAULT_SEED = 0
#: Differences closer to 0 than this are ties (rewards are floats computed by graders).
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PairedComparison:
    """One comparison of a checkpoint's per-row rewards with the base's, over the rows both have."""

    n: int
    base_mean: float | None
    mean: float | None
    mean_diff: float | None
    ci95: tuple[float, float] | None
    wins: int
    losses: int
    ties: int
    p_value: float | None


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test: P(a Binomial(wins + losses, 1/2) count is as far from even as this one).

    Ties are left out before (the usual sign test); with no changed row there is no evidence: p = 1.
    Computed with exact integers, so p-values near 1e-30 stay exact.
    """
    m = wins + losses
    if m == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(m, i) for i in range(k + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2 ** m)))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, interpolated linearly between order statistics (numpy's default)."""
    if not sorted_values:
        raise ValueError("no values")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def bootstrap_ci95(diffs: Sequence[float], resamples: int = DEFAULT_RESAMPLES,
                   seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """95 % percentile interval of the mean difference, resampling rows (pairs stay together) with replacement."""
    if not diffs:
        raise ValueError("no rows to resample")
    rng = random.Random(seed)
    n = len(diffs)
    values = list(diffs)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return percentile(means, 0.025), percentile(means, 0.975)


def compare_paired(base: Mapping[int, float], other: Mapping[int, float], resamples: int = DEFAULT_RESAMPLES,
                   seed: int = DEFAULT_SEED) -> PairedComparison:
    """Compare rewards keyed by row (validation row index) over the rows present in both."""
    rows = sorted(set(base) & set(other))
    if not rows:
        return PairedComparison(0, None, None, None, None, 0, 0, 0, None)
    diffs = [other[r] - base[r] for r in rows]
    wins = sum(1 for d in diffs if d > TIE_TOLERANCE)
    losses = sum(1 for d in diffs if d < -TIE_TOLERANCE)
    n = len(rows)
    base_mean = math.fsum(base[r] for r in rows) / n
    mean = math.fsum(other[r] for r in rows) / n
    return PairedComparison(n=n, base_mean=base_mean, mean=mean, mean_diff=math.fsum(diffs) / n,
                            ci95=bootstrap_ci95(diffs, resamples, seed), wins=wins, losses=losses,
                            ties=n - wins - losses, p_value=sign_test_p(wins, losses))
