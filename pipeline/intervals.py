"""95% intervals and paired tests for the evaluation: Wilson's score interval for a share, a
seeded percentile bootstrap for a mean, and for two conditions measured on the same generations
McNemar's exact test with a paired bootstrap of the difference. Pure Python and numpy: same
inputs, same numbers, on every machine."""
from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: a two-sided 95% interval


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial share successes/n (Wilson 1927). Unlike the normal
    approximation it stays inside [0, 1] and is not empty at 0 or n successes."""
    if n <= 0:
        raise ValueError("a share needs at least one observation")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(values, resamples: int = 2000, seed: int = 0,
                   level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of `values` (resampled with replacement, from a
    fixed seed). With one value the interval is that value."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("a mean needs at least one value")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


# --- paired comparisons: two conditions measured on the same generations (same seeds) ----------

def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar test for paired binary outcomes: the p-value of seeing the
    discordant pairs split `only_first` / `only_second` (yes under the first condition and no
    under the second, and the reverse) if either split were equally likely. Concordant pairs
    carry no information about a difference and do not enter."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_bootstrap_difference(first, second, resamples: int = 2000, seed: int = 0,
                                level: float = LEVEL) -> tuple[float, tuple[float, float]]:
    """Mean of second - first over paired values (the same generations under two conditions),
    with a seeded percentile bootstrap interval that resamples the pairs together."""
    a = np.asarray(list(first), dtype=np.float64)
    b = np.asarray(list(second), dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("a paired difference needs the same number (at least one) of each")
    d = b - a
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(d.mean()), (float(lo), float(hi))


def paired_share(first: list[bool], second: list[bool]) -> dict:
    """How a yes/no outcome differs between two conditions on the same generations: both
    shares, their difference (second - first) with its 95% paired-bootstrap interval, the
    discordant counts and McNemar's exact p-value; `significant` when p < 1 - LEVEL."""
    if len(first) != len(second) or not first:
        raise ValueError("a paired comparison needs the same generations (at least one) in both")
    only_first = sum(a and not b for a, b in zip(first, second))
    only_second = sum(b and not a for a, b in zip(first, second))
    diff, ci = paired_bootstrap_difference(map(float, first), map(float, second))
    p = mcnemar_exact(only_first, only_second)
    return {"n": len(first), "first": sum(first) / len(first), "second": sum(second) / len(second),
            "difference": diff, "difference_ci": ci, "only_first": only_first,
            "only_second": only_second, "p_value": p, "significant": p < 1 - LEVEL}


# --- the evaluation core: one summary of detector rows for every stage and script ---------------

COLOUR_STATS = ("saturation", "contrast", "clipped")  # pipeline/detector.py's STATS


def summarise(rows: list[dict]) -> dict:
    """Over detector rows (pipeline/detector.analyse, with colour_error): the shares with no
    character, exactly one well-formed, one malformed (extra eyes) and two or more characters
    (Wilson intervals), the histogram of counts, the mean colour error (bootstrap interval) and
    the mean of each colour statistic."""
    n = len(rows)
    if not n:
        raise ValueError("a summary needs at least one image")
    counts = [r["characters"] for r in rows]
    one = sum(r["class"] == "one" for r in rows)
    two = sum(c >= 2 for c in counts)
    malformed = sum(r["class"] == "malformed" for r in rows)
    errors = [r["colour_error"] for r in rows]
    return {"n": n, "exactly_one": one / n, "exactly_one_ci": wilson(one, n),
            "two_plus": two / n, "two_plus_ci": wilson(two, n),
            "malformed": malformed / n, "malformed_ci": wilson(malformed, n),
            "none": counts.count(0) / n,
            "histogram": [counts.count(k) for k in range(max(counts) + 1)],
            "colour_error": float(np.mean(errors)), "colour_error_ci": bootstrap_mean(errors),
            **{k: float(np.mean([r[k] for r in rows])) for k in COLOUR_STATS}}


def compare(first: list[dict], second: list[dict]) -> dict:
    """Two conditions on the same generations, rows in the same order: the paired tests of
    each share and the paired difference of the colour error (second - first)."""
    def outcome(rows, test):
        return [test(r) for r in rows]

    err, err_ci = paired_bootstrap_difference([r["colour_error"] for r in first],
                                              [r["colour_error"] for r in second])
    shares = {"two_plus": lambda r: r["characters"] >= 2,
              "exactly_one": lambda r: r["class"] == "one",
              "malformed": lambda r: r["class"] == "malformed"}
    return {**{k: paired_share(outcome(first, test), outcome(second, test))
               for k, test in shares.items()},
            "colour_error": {"difference": err, "difference_ci": err_ci,
                             "significant": err_ci[0] > 0 or err_ci[1] < 0}}
