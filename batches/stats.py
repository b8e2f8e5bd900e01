"""Statistics for cross-site comparability (issue 8; SO-08, SO-09, DV-06).

Pure functions over numbers: no models, no database, no SciPy (SciPy is the test oracle only).

- `Summary`: n, mean and sample SD of one site's results for one CQA, from the values or from
  SQL aggregates (`Count`, `Avg`, `StdDev(sample=True)`).
- `t_cdf` / `t_quantile`: Student's t distribution for any positive, possibly fractional, degrees
  of freedom (Welch), from the regularised incomplete beta function.
- `welch_equivalence` / `paired_equivalence`: the two one-sided tests (TOST, Schuirmann 1987) that
  a spoke site's mean is within ±margin of the reference site's (SO-08: "compare each site with a
  baseline"). Comparability is *shown* only when the whole 90 % confidence interval of the
  difference (alpha = 0.05 each side) lies strictly inside (-margin, margin); a wide interval
  from few or noisy results is "not shown", never "comparable".
- `nelson_breaks`: Nelson rules 1-4 on an individuals chart (SO-09 trend charts), one break per
  maximal run, so a growing run keeps its start and the caller raises one signal per episode.
"""

from __future__ import annotations

import enum
import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

Number = float | Decimal

MIN_N = 3  # fewer results than this on either side -> TOO_LITTLE_DATA
ALPHA = 0.05  # TOST at alpha = 0.05 on each side <=> a 90 % confidence interval


class Verdict(enum.StrEnum):
    """The outcome of a comparability check of one CQA at one site against the reference."""

    COMPARABLE = "comparable"
    NOT_SHOWN = "not_shown"
    TOO_LITTLE_DATA = "too_little_data"

    @property
    def label(self) -> str:
        return _VERDICT_LABELS[self]


_VERDICT_LABELS: dict[Verdict, str] = {
    Verdict.COMPARABLE: "Comparable",
    Verdict.NOT_SHOWN: "Not shown",
    Verdict.TOO_LITTLE_DATA: "Too little data",
}


def _finite(value: Number | int, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, not {value!r}")
    return number


#
# Summaries
#


@dataclass(frozen=True)
class Summary:
    """n, mean and sample standard deviation (n - 1 divisor) of one set of results.

    `mean` is None when n == 0 and `sd` is None when n < 2, as SQL's AVG and STDDEV_SAMP give.
    """

    n: int
    mean: float | None
    sd: float | None

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must not be negative")
        if (self.mean is None) != (self.n == 0):
            raise ValueError("mean must be given exactly when n >= 1")
        if (self.sd is None) != (self.n < 2):
            raise ValueError("sd must be given exactly when n >= 2")
        if self.sd is not None and self.sd < 0:
            raise ValueError("sd must not be negative")

    @classmethod
    def of(cls, values: Iterable[Number]) -> Summary:
        xs = [_finite(v, "a result") for v in values]
        n = len(xs)
        mean = statistics.fmean(xs) if n else None
        # statistics.stdev sums squares exactly (rationals): no cancellation for values with a
        # large mean and a tiny spread, which CQA results (e.g. 99.98 % assay) often are.
        sd = statistics.stdev(xs) if n >= 2 else None
        return cls(n=n, mean=mean, sd=sd)

    @classmethod
    def from_aggregates(cls, n: int, mean: Number | None, sd: Number | None) -> Summary:
        """From `Count`, `Avg` and `StdDev(sample=True)`; the database gives NULL (None) for the
        mean of nothing and for the SD of fewer than two values — a value given there is
        ignored, so the aggregates can be passed on as they come."""
        if n < 0:
            raise ValueError("n must not be negative")
        if n >= 1 and mean is None:
            raise ValueError("the mean of one or more results cannot be None")
        if n >= 2 and sd is None:
            raise ValueError("the SD of two or more results cannot be None")
        return cls(
            n=n,
            mean=_finite(mean, "the mean") if n >= 1 and mean is not None else None,
            sd=_finite(sd, "the SD") if n >= 2 and sd is not None else None,
        )


#
# Student's t distribution
#

_LN_SQRT_PI = 0.5 * math.log(math.pi)
_CF_EPS = 1e-16
_CF_TINY = 1e-300
_CF_MAX_ITERATIONS = 100_000
# From this many degrees of freedom on, the continued fraction loses digits near its switching
# point (about 1e-12 relative at 1e4, worse above) while Hill's asymptotic normalisation is good to
# about 1e-14 (both measured against SciPy over |t| <= 60).
_DF_LARGE = 1e4
_NORMAL = statistics.NormalDist()


def _stirling_tail(x: float) -> float:
    """lgamma(x) - ((x - 1/2) ln x - x + ln(2 pi)/2) for x >= 10, to about 1e-16:
    1/12x - 1/360x^3 + 1/1260x^5 - 1/1680x^7 + 1/1188x^9."""
    r = 1.0 / (x * x)
    return (1 / 12 - r * (1 / 360 - r * (1 / 1260 - r * (1 / 1680 - r / 1188)))) / x


def _log_beta_half(a: float) -> float:
    """ln B(a, 1/2) = ln Gamma(a) + ln sqrt(pi) - ln Gamma(a + 1/2), without the cancellation that
    subtracting two large lgamma values would bring at large degrees of freedom."""
    if a < 10:
        return math.lgamma(a) + _LN_SQRT_PI - math.lgamma(a + 0.5)
    # ln Gamma(a + 1/2) - ln Gamma(a) by Stirling's series, with a ln(1 + 1/2a) - 1/2 kept small.
    log_ratio = (
        0.5 * math.log(a)
        + (a * math.log1p(0.5 / a) - 0.5)
        + (_stirling_tail(a + 0.5) - _stirling_tail(a))
    )
    return _LN_SQRT_PI - log_ratio


def _beta_continued_fraction(a: float, b: float, x: float, y: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz; Numerical Recipes' betacf); y = 1 - x,
    given separately so that x close to 1 loses nothing."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    # 1 - qab x / qap, written without cancelling when x is near 1 and a is large
    d = ((1.0 - b) + qab * y) / qap
    d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
    h = d
    for m in range(1, _CF_MAX_ITERATIONS + 1):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
            c = 1.0 + numerator / c
            if abs(c) < _CF_TINY:
                c = _CF_TINY
            delta = c * d
            h *= delta
        if abs(delta - 1.0) <= _CF_EPS:
            return h
    raise ArithmeticError("incomplete beta: no convergence")  # pragma: no cover


def _softplus(u: float) -> float:
    """ln(1 + e^u) without overflow or loss of small values."""
    return u + math.log1p(math.exp(-u)) if u > 0 else math.log1p(math.exp(u))


def _t_log_lower_tail(t: float, df: float) -> float:
    """ln P(T <= t) for t <= 0, accurate relative to the tail's (possibly tiny) size; in logs so
    that a tail below the smallest float still guides the quantile search."""
    if t == 0:
        return -math.log(2.0)
    if math.isinf(t):
        return -math.inf
    if math.isinf(df):
        return _log_normal_lower_tail(t)
    if df >= _DF_LARGE:
        return _log_normal_lower_tail(-_hill_normal_deviate(t, df))
    # P(T <= t) = I_x(df/2, 1/2) / 2 with x = df / (df + t^2), y = 1 - x; x and y from logs so
    # that neither t^2 overflowing nor y being tiny loses anything.
    a, b = 0.5 * df, 0.5
    log_ratio = 2.0 * math.log(-t) - math.log(df)  # ln(t^2 / df)
    log_x, log_y = -_softplus(log_ratio), -_softplus(-log_ratio)
    x, y = math.exp(log_x), math.exp(log_y)
    log_front = a * log_x + b * log_y - _log_beta_half(a)
    if x < (a + 1.0) / (a + b + 2.0):
        log_incomplete = log_front + math.log(_beta_continued_fraction(a, b, x, y) / a)
    else:
        log_incomplete = math.log1p(-math.exp(log_front) * _beta_continued_fraction(b, a, y, x) / b)
    return log_incomplete - math.log(2.0)


def _normal_cdf(z: float) -> float:
    # erfc, not NormalDist.cdf's 1 + erf, keeps the lower tail's relative accuracy.
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _hill_normal_deviate(t: float, df: float) -> float:
    """The normal deviate z with P(Z > z) = P(T > |t|) for large df (Hill 1970, ACM algorithm 395:
    z^2 ~ (df - 1/2) ln(1 + t^2/df), with its O(1/df^2) correction)."""
    a = df - 0.5
    b = 48.0 * a * a
    y = a * _softplus(2.0 * math.log(abs(t)) - math.log(df))  # a ln(1 + t^2/df)
    return (
        ((((-0.4 * y - 3.3) * y - 24.0) * y - 85.5) / (0.8 * y * y + 100.0 + b) + y + 3.0) / b + 1.0
    ) * math.sqrt(y)


def _log_normal_lower_tail(z: float) -> float:
    p = _normal_cdf(z)
    if p > 0:
        return math.log(p)
    # Beyond about -37 sigma: Mills' ratio, ln phi(z) - ln|z| + ln(1 - 1/z^2 + 3/z^4).
    return (
        -0.5 * z * z
        - math.log(-z)
        - 0.5 * math.log(2 * math.pi)
        + math.log1p(-1 / (z * z) + 3 / z**4)
    )


def _t_lower_tail(t: float, df: float) -> float:
    """P(T <= t) for t <= 0."""
    return math.exp(_t_log_lower_tail(t, df))


def _check_df(df: float) -> float:
    df = float(df)
    if math.isnan(df) or df <= 0:
        raise ValueError(f"degrees of freedom must be positive, not {df!r}")
    return df


def t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with `df` > 0 degrees of freedom (fractional allowed; inf gives
    the normal distribution)."""
    df = _check_df(df)
    x = float(x)
    if math.isnan(x):
        raise ValueError("x must be a number, not NaN")
    if x <= 0:
        return _t_lower_tail(x, df)
    return 1.0 - _t_lower_tail(-x, df)


def _t_sf(x: float, df: float) -> float:
    """P(T > x), accurate in the upper tail (1 - t_cdf would round tiny values to 0)."""
    return _t_lower_tail(-x, df) if x >= 0 else 1.0 - _t_lower_tail(x, df)


def _t_log_pdf(t: float, df: float) -> float:
    if math.isinf(df):
        return -0.5 * t * t - 0.5 * math.log(2 * math.pi)
    log_df = math.log(df)
    # ln(1 + t^2/df) without overflowing t^2
    log_kernel = _softplus(2.0 * math.log(abs(t)) - log_df) if t else 0.0
    return -_log_beta_half(0.5 * df) - 0.5 * log_df - 0.5 * (df + 1.0) * log_kernel


def _t_lower_quantile_magnitude(q: float, df: float) -> float:
    """s > 0 with P(T <= -s) = q, for 0 < q < 1/2."""
    if df == 1:  # Cauchy
        return 1.0 / math.tan(math.pi * q)
    if df == 2:
        return (1.0 - 2.0 * q) / math.sqrt(2.0 * q * (1.0 - q))
    z = -_NORMAL.inv_cdf(q)
    if math.isinf(df):
        return z
    # A first guess: the Cornish-Fisher expansion about the normal quantile, or, far in a heavy
    # tail, the tail's power law P(T <= -s) ~ df^(df/2 - 1) s^-df / B(df/2, 1/2).
    z2 = z * z
    guess = z * (1.0 + (z2 + 1.0) / (4.0 * df) + ((5.0 * z2 + 16.0) * z2 + 3.0) / (96.0 * df * df))
    log_tail = ((0.5 * df - 1.0) * math.log(df) - _log_beta_half(0.5 * df) - math.log(q)) / df
    if log_tail < 700:
        guess = max(guess, math.exp(log_tail))
    # Newton's method on ln P(T <= -s) = ln q, kept inside a bracket [low, high] that always
    # holds the root; a step leaving it is replaced by bisection (geometric when it is wide).
    target = math.log(q)
    low, high = 0.0, guess
    while _t_log_lower_tail(-high, df) > target:
        low, high = high, high * 2.0
        if math.isinf(high):
            return math.inf  # the quantile is beyond the largest float
    s = high
    for _ in range(200):
        log_tail = _t_log_lower_tail(-s, df)
        excess = log_tail - target  # > 0: s is too small
        if excess > 0:
            low = s
        elif excess < 0:
            high = s
        else:
            return s
        # d/ds ln P(T <= -s) = -pdf(s) / P(T <= -s)
        step = excess * math.exp(log_tail - _t_log_pdf(s, df))
        candidate = s + step
        if not low < candidate < high:
            candidate = math.sqrt(low * high) if low > 0 and high > 4 * low else 0.5 * (low + high)
        if abs(candidate - s) <= 2e-16 * s or high - low <= 2e-16 * high:
            return candidate
        s = candidate
    return s  # pragma: no cover - Newton converges in a handful of steps


def t_quantile(p: float, df: float) -> float:
    """The x with P(T <= x) = p for Student's t with `df` > 0 degrees of freedom; 0 < p < 1."""
    df = _check_df(df)
    p = float(p)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be strictly between 0 and 1, not {p!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -_t_lower_quantile_magnitude(p, df)
    return _t_lower_quantile_magnitude(1.0 - p, df)


#
# Equivalence (TOST)
#


def _sig6(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.6g}")


@dataclass(frozen=True)
class Equivalence:
    """One TOST comparison of a site with the reference site for one CQA (SO-08).

    `difference` is mean(site) - mean(reference) (paired: the mean of site - reference);
    `ci_low`/`ci_high` its (1 - 2 alpha) confidence interval (90 % at alpha = 0.05);
    `p_lower` tests H0: difference <= -margin, `p_upper` H0: difference >= margin, and
    `p_tost` = max of the two. Fields that need data the check did not have are None.
    """

    n_site: int
    n_reference: int
    mean_site: float | None
    mean_reference: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    df: float | None
    margin: float
    p_lower: float | None
    p_upper: float | None
    p_tost: float | None
    verdict: Verdict
    paired: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: floats to 6 significant digits, None kept, the verdict as its value."""
        out: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Verdict):
                out[field.name] = value.value
            elif isinstance(value, float):
                out[field.name] = _sig6(value)
            else:
                out[field.name] = value
        return out


def _check_test_arguments(margin: float, alpha: float, min_n: int) -> float:
    margin = float(margin)
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"the equivalence margin must be a positive number, not {margin!r}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be strictly between 0 and 0.5, not {alpha!r}")
    if min_n < 2:
        raise ValueError("min_n must be at least 2: a standard deviation needs two results")
    return margin


def _tost(
    *,
    n_site: int,
    n_reference: int,
    mean_site: float,
    mean_reference: float,
    difference: float,
    se: float,
    df: float | None,
    margin: float,
    alpha: float,
    paired: bool,
) -> Equivalence:
    if se > 0 and df is not None:
        half_width = t_quantile(1.0 - alpha, df) * se
        ci_low, ci_high = difference - half_width, difference + half_width
        p_lower = _t_sf((difference + margin) / se, df)
        p_upper = t_cdf((difference - margin) / se, df)
    else:
        # Every result identical on both sides: no spread, so the interval is the point itself
        # and each one-sided hypothesis is either certainly true or certainly false.
        ci_low = ci_high = difference
        p_lower = 0.0 if difference > -margin else 1.0
        p_upper = 0.0 if difference < margin else 1.0
    comparable = -margin < ci_low and ci_high < margin
    return Equivalence(
        n_site=n_site,
        n_reference=n_reference,
        mean_site=mean_site,
        mean_reference=mean_reference,
        difference=difference,
        ci_low=ci_low,
        ci_high=ci_high,
        df=df,
        margin=margin,
        p_lower=p_lower,
        p_upper=p_upper,
        p_tost=max(p_lower, p_upper),
        verdict=Verdict.COMPARABLE if comparable else Verdict.NOT_SHOWN,
        paired=paired,
    )


def _too_little_data(
    *,
    n_site: int,
    n_reference: int,
    mean_site: float | None,
    mean_reference: float | None,
    difference: float | None,
    margin: float,
    paired: bool,
) -> Equivalence:
    return Equivalence(
        n_site=n_site,
        n_reference=n_reference,
        mean_site=mean_site,
        mean_reference=mean_reference,
        difference=difference,
        ci_low=None,
        ci_high=None,
        df=None,
        margin=margin,
        p_lower=None,
        p_upper=None,
        p_tost=None,
        verdict=Verdict.TOO_LITTLE_DATA,
        paired=paired,
    )


def welch_equivalence(
    site: Summary,
    reference: Summary,
    margin: float,
    *,
    alpha: float = ALPHA,
    min_n: int = MIN_N,
) -> Equivalence:
    """TOST for two independent samples (SO-08): is |mean(site) - mean(reference)| < margin?

    Welch's t with Welch-Satterthwaite degrees of freedom (no equal-variance assumption: a spoke
    site's spread is itself part of what is being compared). Fewer than `min_n` results on either
    side gives TOO_LITTLE_DATA. With every result identical on both sides the interval collapses
    to the difference and df is None (it is 0/0).
    """
    margin = _check_test_arguments(margin, alpha, min_n)
    difference = (
        site.mean - reference.mean if site.mean is not None and reference.mean is not None else None
    )
    if site.n < min_n or reference.n < min_n:
        return _too_little_data(
            n_site=site.n,
            n_reference=reference.n,
            mean_site=site.mean,
            mean_reference=reference.mean,
            difference=difference,
            margin=margin,
            paired=False,
        )
    # n >= min_n >= 2, so Summary guarantees both means and SDs.
    assert site.mean is not None and reference.mean is not None and difference is not None  # noqa: S101
    assert site.sd is not None and reference.sd is not None  # noqa: S101
    v_site = site.sd * site.sd / site.n
    v_reference = reference.sd * reference.sd / reference.n
    se = math.sqrt(v_site + v_reference)
    largest = max(v_site, v_reference)
    df: float | None = None
    if largest > 0:
        # Welch-Satterthwaite, scaled by the larger variance so that tiny variances cannot
        # underflow to 0/0.
        r_site, r_reference = v_site / largest, v_reference / largest
        df = (r_site + r_reference) ** 2 / (
            r_site * r_site / (site.n - 1) + r_reference * r_reference / (reference.n - 1)
        )
    return _tost(
        n_site=site.n,
        n_reference=reference.n,
        mean_site=site.mean,
        mean_reference=reference.mean,
        difference=difference,
        se=se,
        df=df,
        margin=margin,
        alpha=alpha,
        paired=False,
    )


def paired_equivalence(
    pairs: Sequence[tuple[Number, Number]],
    margin: float,
    *,
    alpha: float = ALPHA,
    min_n: int = MIN_N,
) -> Equivalence:
    """TOST on paired results (SO-08): each pair is (reference_value, site_value) from one lot of
    split starting material, so lot-to-lot variation cancels. A one-sample t on the site -
    reference differences with n - 1 degrees of freedom; fewer than `min_n` pairs gives
    TOO_LITTLE_DATA."""
    margin = _check_test_arguments(margin, alpha, min_n)
    references = [_finite(reference, "a reference result") for reference, _ in pairs]
    sites = [_finite(site, "a site result") for _, site in pairs]
    n = len(sites)
    mean_site = statistics.fmean(sites) if n else None
    mean_reference = statistics.fmean(references) if n else None
    differences = Summary.of(s - r for r, s in zip(references, sites, strict=True))
    if n < min_n:
        return _too_little_data(
            n_site=n,
            n_reference=n,
            mean_site=mean_site,
            mean_reference=mean_reference,
            difference=differences.mean,
            margin=margin,
            paired=True,
        )
    assert differences.mean is not None and differences.sd is not None  # noqa: S101
    assert mean_site is not None and mean_reference is not None  # noqa: S101
    se = differences.sd / math.sqrt(n)
    return _tost(
        n_site=n,
        n_reference=n,
        mean_site=mean_site,
        mean_reference=mean_reference,
        difference=differences.mean,
        se=se,
        df=float(n - 1) if se > 0 else None,
        margin=margin,
        alpha=alpha,
        paired=True,
    )


#
# Nelson rules (control-chart signals)
#


class Rule(enum.IntEnum):
    """Nelson's tests for special causes on a control chart (Nelson 1984), rules 1-4."""

    BEYOND_3SD = 1
    NINE_SAME_SIDE = 2
    SIX_TRENDING = 3
    FOURTEEN_ALTERNATING = 4

    @property
    def label(self) -> str:
        return _RULE_LABELS[self]

    @property
    def run_length(self) -> int:
        """How many points in a row make the pattern (1 for a single point)."""
        return _RUN_LENGTHS[self]


_RULE_LABELS: dict[Rule, str] = {
    Rule.BEYOND_3SD: "Rule 1: a point beyond 3 SD",
    Rule.NINE_SAME_SIDE: "Rule 2: nine points in a row on one side of the centre line",
    Rule.SIX_TRENDING: "Rule 3: six points in a row steadily increasing or decreasing",
    Rule.FOURTEEN_ALTERNATING: "Rule 4: fourteen points in a row alternating up and down",
}
_RUN_LENGTHS: dict[Rule, int] = {
    Rule.BEYOND_3SD: 1,
    Rule.NINE_SAME_SIDE: 9,
    Rule.SIX_TRENDING: 6,
    Rule.FOURTEEN_ALTERNATING: 14,
}


@dataclass(frozen=True)
class RuleBreak:
    """One episode of a rule: points start..end (inclusive indices into the series).

    For a run rule, `start` is the first point of the maximal run, so the same episode keeps the
    same (rule, start) as results are added; `points` are those to mark — from the point that
    completed the pattern to the end of the run.
    """

    rule: Rule
    start: int
    end: int

    @property
    def points(self) -> range:
        return range(self.start + self.rule.run_length - 1, self.end + 1)


def _runs(keys: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal stretches (first, last) of equal non-zero keys."""
    out: list[tuple[int, int]] = []
    first = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[first]:
            if keys[first] != 0:
                out.append((first, i - 1))
            first = i
    return out


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def nelson_breaks(values: Sequence[Number], centre: float, sigma: float) -> list[RuleBreak]:
    """Nelson rules 1-4 on a series in time order, sorted by (start, rule).

    1. a point more than 3 sigma from the centre line — one break per point;
    2. nine or more points in a row strictly on one side of the centre (a point on it ends a run);
    3. six or more points in a row strictly increasing or strictly decreasing (a tie ends it);
    4. fourteen or more points in a row alternating up and down (a zero step ends it).

    Each maximal run is one break, so (rule, start) identifies an episode as the series grows.
    """
    centre = _finite(centre, "the centre line")
    sigma = _finite(sigma, "sigma")
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    xs = [_finite(v, "a result") for v in values]
    breaks: list[RuleBreak] = []

    limit = 3.0 * sigma
    breaks.extend(
        RuleBreak(Rule.BEYOND_3SD, i, i) for i, x in enumerate(xs) if abs(x - centre) > limit
    )

    sides = [_sign(x - centre) for x in xs]
    breaks.extend(
        RuleBreak(Rule.NINE_SAME_SIDE, first, last)
        for first, last in _runs(sides)
        if last - first + 1 >= Rule.NINE_SAME_SIDE.run_length
    )

    # Steps: step j goes from point j to point j + 1, so steps first..last span points
    # first..last + 1.
    steps = [_sign(b - a) for a, b in itertools.pairwise(xs)]
    breaks.extend(
        RuleBreak(Rule.SIX_TRENDING, first, last + 1)
        for first, last in _runs(steps)
        if last - first + 2 >= Rule.SIX_TRENDING.run_length
    )

    # Alternation: mark each step by whether it turns against the previous one; a run of
    # alternating steps is a stretch where every step after the first turns.
    first = 0
    for j in range(1, len(steps) + 1):
        turns = j < len(steps) and steps[j] != 0 and steps[j] == -steps[j - 1]
        if not turns:
            if steps[first] != 0 and j - first + 1 >= Rule.FOURTEEN_ALTERNATING.run_length:
                breaks.append(RuleBreak(Rule.FOURTEEN_ALTERNATING, first, j))
            first = j

    breaks.sort(key=lambda b: (b.start, b.rule, b.end))
    return breaks


def flagged_points(breaks: Iterable[RuleBreak]) -> dict[int, list[int]]:
    """Index -> the sorted numbers of the rules that mark that point (for charts and tables)."""
    marks: dict[int, set[int]] = {}
    for rule_break in breaks:
        for index in rule_break.points:
            marks.setdefault(index, set()).add(int(rule_break.rule))
    return {index: sorted(marks[index]) for index in sorted(marks)}
