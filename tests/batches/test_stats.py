"""The comparability statistics (issue 8; SO-08, SO-09), checked against SciPy as an independent
oracle on fixed data and on random data (hypothesis). No database."""

from __future__ import annotations

import ast
import json
import math
import warnings
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from batches.stats import (
    ALPHA,
    MIN_N,
    Equivalence,
    Rule,
    RuleBreak,
    Summary,
    Verdict,
    flagged_points,
    nelson_breaks,
    paired_equivalence,
    t_cdf,
    t_quantile,
    welch_equivalence,
)

ROOT = Path(__file__).resolve().parents[2]

# Fixed data: assay (% label claim) of a spoke site and of the reference site.
SITE = [99.1, 100.2, 98.7, 101.0, 99.5, 100.4]
REFERENCE = [100.0, 100.8, 99.9, 100.3, 101.2, 100.6, 99.7]
# A noisier, smaller site with a different spread (Welch df well away from n1 + n2 - 2).
SITE_NOISY = [96.2, 103.9, 99.0, 101.7]

# Small, fractional (Welch), and large df; 1e4 is where t_cdf changes method.
DFS = [
    0.3,
    0.5,
    1,
    1.5,
    2,
    2.7,
    3,
    4.2,
    5,
    8.116994647810579,
    10,
    17.5,
    30,
    99.9,
    1000,
    9999.5,
    1e4,
    2.5e5,
    1e7,
    1e11,
]


def rel(expected: float, rtol: float) -> object:
    return pytest.approx(expected, rel=rtol, abs=0)


def test_production_modules_do_not_import_scipy() -> None:
    """SciPy is a dev-only dependency: the oracle of these tests, never a production import."""
    for name in ("stats.py", "charts.py"):
        tree = ast.parse((ROOT / "batches" / name).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert "scipy" not in imported, name


#
# Student's t
#


@pytest.mark.parametrize("df", DFS)
@pytest.mark.parametrize(
    "x",
    [
        -1e5,
        -300.0,
        -60.0,
        -25.0,
        -10.0,
        -4.0,
        -2.0,
        -1.0,
        -0.5,
        -0.01,
        0.0,
        0.3,
        1.7,
        3.0,
        8.0,
        40.0,
    ],
)
def test_t_cdf_matches_scipy_including_far_tails(df: float, x: float) -> None:
    expected = float(sps.t.cdf(x, df))
    if expected < 1e-300:  # below the normal floats: both must be as good as zero
        assert t_cdf(x, df) < 1e-290
        return
    assert t_cdf(x, df) == rel(expected, 1e-10)


@pytest.mark.parametrize("df", DFS)
@pytest.mark.parametrize("x", [0.5, 2.0, 6.0, 30.0])
def test_the_upper_tail_is_one_minus_the_lower(df: float, x: float) -> None:
    assert 1.0 - t_cdf(x, df) == pytest.approx(float(sps.t.sf(x, df)), rel=1e-9, abs=1e-16)
    assert t_cdf(-x, df) == rel(float(sps.t.sf(x, df)), 1e-10)


@pytest.mark.parametrize("df", DFS)
@pytest.mark.parametrize(
    "p",
    [
        1e-12,
        1e-6,
        0.001,
        0.025,
        0.05,
        0.1,
        0.3,
        0.4999,
        0.6,
        0.9,
        0.95,
        0.975,
        0.999,
        1 - 1e-9,
    ],
)
def test_t_quantile_matches_scipy(df: float, p: float) -> None:
    expected = float(sps.t.ppf(p, df))
    if abs(expected) > 1e150:
        pytest.skip("SciPy's own ppf is not reliable this far out (see the round-trip test)")
    assert t_quantile(p, df) == rel(expected, 1e-9)


@pytest.mark.parametrize("df", [0.5, 1, 2, 3, 7.3, 40, 5e4])
@pytest.mark.parametrize("p", [1e-300, 1e-200, 1e-100, 1e-30])
def test_t_quantile_far_in_the_tail_round_trips_through_scipys_cdf(df: float, p: float) -> None:
    x = t_quantile(p, df)
    if math.isinf(x):
        # The quantile is beyond the largest float: even there the tail is still above p.
        # (SciPy's cdf underflows to 0 out there, so it cannot be the judge.)
        assert x == -math.inf
        assert t_cdf(-np.finfo(float).max, df) > p
        return
    assert t_cdf(x, df) == rel(p, 1e-12)
    scipy_p = float(sps.t.cdf(x, df))
    # SciPy's cdf underflows to 0 for some of these far quantiles (e.g. -3e299 at df = 1,
    # where the Cauchy closed form gives 1e-300); where it gives a number, it agrees.
    if scipy_p > 0:
        assert scipy_p == rel(p, 1e-11)
    if df == 1:
        assert math.atan2(1.0, -x) / math.pi == rel(p, 1e-13)


@pytest.mark.parametrize("df", [1, 2, 6.5, 100])
@pytest.mark.parametrize("p", [0.01, 0.05, 0.2])
def test_t_quantile_is_the_inverse_of_t_cdf_and_symmetric(df: float, p: float) -> None:
    x = t_quantile(p, df)
    assert t_cdf(x, df) == rel(p, 1e-13)
    assert t_quantile(1 - p, df) == pytest.approx(-x, rel=1e-13)


@pytest.mark.parametrize("x", [-1e300, -1e30, -3.0, -1e-12, 0.5, 1e12])
def test_t_cdf_with_one_df_is_the_cauchy_distribution(x: float) -> None:
    # Closed forms, accurate in both tails where SciPy's general routine is not.
    expected = math.atan2(1.0, -x) / math.pi if x < 0 else 0.5 + math.atan(x) / math.pi
    assert t_cdf(x, 1.0) == rel(expected, 1e-13)


def test_t_at_the_centre_and_at_infinity() -> None:
    assert t_cdf(0.0, 3.0) == 0.5
    assert t_quantile(0.5, 3.0) == 0.0
    assert t_cdf(-math.inf, 3.0) == 0.0
    assert t_cdf(math.inf, 3.0) == 1.0
    # Infinite degrees of freedom is the normal distribution.
    assert t_cdf(-2.5, math.inf) == rel(float(sps.norm.cdf(-2.5)), 1e-13)
    assert t_cdf(-40.0, math.inf) == rel(float(sps.norm.cdf(-40.0)), 1e-9)
    assert t_quantile(0.975, math.inf) == rel(float(sps.norm.ppf(0.975)), 1e-13)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_t_quantile_refuses_a_probability_outside_0_1(p: float) -> None:
    with pytest.raises(ValueError, match="p must be"):
        t_quantile(p, 5.0)


@pytest.mark.parametrize("df", [0.0, -1.0, math.nan])
def test_t_refuses_degrees_of_freedom_that_are_not_positive(df: float) -> None:
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_cdf(1.0, df)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0.9, df)


def test_t_cdf_refuses_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        t_cdf(math.nan, 5.0)


#
# Summaries
#


def test_summary_of_values_matches_numpy_and_takes_decimals() -> None:
    s = Summary.of(SITE)
    assert s.n == 6
    assert s.mean == rel(float(np.mean(SITE)), 1e-15)
    assert s.sd == rel(float(np.std(SITE, ddof=1)), 1e-14)
    assert Summary.of(Decimal(str(v)) for v in SITE) == s


def test_summary_keeps_a_tiny_spread_around_a_large_mean() -> None:
    step = 2.0**-10  # exactly representable next to 1e9
    values = [1e9 + step, 1e9 + 2 * step, 1e9 + 3 * step]
    assert Summary.of(values).sd == step


def test_summary_of_few_values_has_no_sd_and_of_none_no_mean() -> None:
    assert Summary.of([]) == Summary(n=0, mean=None, sd=None)
    assert Summary.of([Decimal("4.2")]) == Summary(n=1, mean=4.2, sd=None)


def test_summary_from_sql_aggregates() -> None:
    """As PostgreSQL's COUNT, AVG and STDDEV_SAMP give them: Decimals, NULL for too few."""
    s = Summary.from_aggregates(6, Decimal("99.81666666666666667"), Decimal("0.8518607084"))
    assert (s.n, s.mean, s.sd) == (6, float(Decimal("99.81666666666666667")), 0.8518607084)
    assert Summary.from_aggregates(0, None, None) == Summary(n=0, mean=None, sd=None)
    assert Summary.from_aggregates(1, 5.0, None) == Summary(n=1, mean=5.0, sd=None)
    # The SD of one value is ignored even if a database gives 0 for it.
    assert Summary.from_aggregates(1, 5.0, 0.0) == Summary(n=1, mean=5.0, sd=None)


@pytest.mark.parametrize(
    ("n", "mean", "sd"),
    [(-1, None, None), (2, None, 1.0), (3, 1.0, None), (3, 1.0, -0.5), (3, math.nan, 1.0)],
)
def test_summary_from_aggregates_refuses_inconsistent_numbers(
    n: int, mean: float | None, sd: float | None
) -> None:
    with pytest.raises(ValueError):
        Summary.from_aggregates(n, mean, sd)


def test_summary_refuses_non_finite_results() -> None:
    with pytest.raises(ValueError, match="finite"):
        Summary.of([1.0, math.inf])
    with pytest.raises(ValueError, match="finite"):
        Summary.of([Decimal("NaN")])


#
# Welch TOST (independent samples)
#


@pytest.mark.parametrize(("site", "reference"), [(SITE, REFERENCE), (SITE_NOISY, REFERENCE)])
@pytest.mark.parametrize("margin", [0.5, 1.5, 2.0, 6.0])
def test_welch_interval_and_p_values_match_scipy(
    site: list[float], reference: list[float], margin: float
) -> None:
    result = welch_equivalence(Summary.of(site), Summary.of(reference), margin)

    welch = sps.ttest_ind(site, reference, equal_var=False)
    ci = welch.confidence_interval(0.90)
    assert result.df == rel(float(welch.df), 1e-12)
    assert result.difference == rel(float(np.mean(site) - np.mean(reference)), 1e-12)
    assert result.ci_low == rel(float(ci.low), 1e-10)
    assert result.ci_high == rel(float(ci.high), 1e-10)
    # The two one-sided tests are one-sided Welch tests of the data shifted by the margin.
    shifted_up = np.array(site) + margin
    shifted_down = np.array(site) - margin
    p_lower = sps.ttest_ind(shifted_up, reference, equal_var=False, alternative="greater").pvalue
    p_upper = sps.ttest_ind(shifted_down, reference, equal_var=False, alternative="less").pvalue
    assert result.p_lower == rel(float(p_lower), 1e-8)
    assert result.p_upper == rel(float(p_upper), 1e-8)
    assert result.p_lower is not None and result.p_upper is not None
    assert result.p_tost == max(result.p_lower, result.p_upper)
    # The interval rule and the p-value rule agree.
    assert (result.verdict is Verdict.COMPARABLE) == (result.p_tost < ALPHA)
    assert result.n_site == len(site) and result.n_reference == len(reference)
    assert result.margin == margin and result.paired is False


def test_welch_takes_decimal_results_and_sql_aggregates_alike() -> None:
    from_values = welch_equivalence(
        Summary.of(Decimal(str(v)) for v in SITE), Summary.of(REFERENCE), 2.0
    )
    site = Summary.of(SITE)
    assert site.mean is not None and site.sd is not None
    from_sql = welch_equivalence(
        Summary.from_aggregates(site.n, Decimal(repr(site.mean)), Decimal(repr(site.sd))),
        Summary.of(REFERENCE),
        2.0,
    )
    assert from_values == from_sql
    assert from_values.verdict is Verdict.COMPARABLE


@pytest.mark.parametrize("side", ["low", "high"])
def test_verdict_turns_exactly_where_the_90_percent_interval_meets_the_margin(side: str) -> None:
    """Comparable iff the whole 90 % CI lies strictly inside (-margin, margin): a margin just
    outside SciPy's interval bound shows comparability, one just inside does not."""
    # A site whose mean is above the reference (high) or below it (low).
    offset = 0.9 if side == "high" else -0.9
    site = [v + offset for v in REFERENCE]
    ci = sps.ttest_ind(site, REFERENCE, equal_var=False).confidence_interval(0.90)
    bound = float(ci.high) if side == "high" else -float(ci.low)
    summaries = (Summary.of(site), Summary.of(REFERENCE))

    just_outside = welch_equivalence(*summaries, bound * (1 + 1e-9))
    just_inside = welch_equivalence(*summaries, bound * (1 - 1e-9))
    assert just_outside.verdict is Verdict.COMPARABLE
    assert just_outside.p_tost is not None and just_outside.p_tost < ALPHA
    assert just_inside.verdict is Verdict.NOT_SHOWN
    assert just_inside.p_tost is not None and just_inside.p_tost > ALPHA
    # At the bound itself the two-sided condition is strict: not shown.
    own_bound = just_inside.ci_high if side == "high" else just_inside.ci_low
    assert own_bound is not None
    exactly = welch_equivalence(*summaries, abs(own_bound))
    assert exactly.verdict is Verdict.NOT_SHOWN


def test_a_wide_interval_from_noisy_results_is_not_shown_even_with_equal_means() -> None:
    """Absence of a difference is not comparability (SO-08): the same mean with a wide CI."""
    site = [90.0, 110.0, 95.0, 105.0]
    result = welch_equivalence(Summary.of(site), Summary.of([99.0, 101.0, 100.0]), 2.0)
    assert result.difference == 0.0
    assert result.verdict is Verdict.NOT_SHOWN


def test_a_larger_alpha_narrows_the_interval() -> None:
    summaries = (Summary.of(SITE), Summary.of(REFERENCE))
    at_5 = welch_equivalence(*summaries, 1.4)
    at_10 = welch_equivalence(*summaries, 1.4, alpha=0.10)
    ci = sps.ttest_ind(SITE, REFERENCE, equal_var=False).confidence_interval(0.80)
    assert at_10.ci_high == rel(float(ci.high), 1e-10)
    assert at_10.ci_low is not None and at_5.ci_low is not None
    assert at_10.ci_low > at_5.ci_low


@pytest.mark.parametrize(("n_site", "n_reference"), [(0, 7), (1, 7), (2, 7), (6, 2), (2, 2)])
def test_fewer_than_three_results_on_either_side_is_too_little_data(
    n_site: int, n_reference: int
) -> None:
    site, reference = Summary.of(SITE[:n_site]), Summary.of(REFERENCE[:n_reference])
    result = welch_equivalence(site, reference, 2.0)
    assert MIN_N == 3
    assert result.verdict is Verdict.TOO_LITTLE_DATA
    assert (result.n_site, result.n_reference) == (n_site, n_reference)
    assert result.mean_site == site.mean and result.mean_reference == reference.mean
    assert (result.difference is None) == (n_site == 0)
    assert result.ci_low is result.ci_high is result.df is None
    assert result.p_lower is result.p_upper is result.p_tost is None


def test_min_n_can_be_raised_but_not_below_two() -> None:
    summaries = (Summary.of(SITE), Summary.of(REFERENCE))
    assert welch_equivalence(*summaries, 2.0, min_n=7).verdict is Verdict.TOO_LITTLE_DATA
    assert welch_equivalence(*summaries, 2.0, min_n=6).verdict is Verdict.COMPARABLE
    with pytest.raises(ValueError, match="min_n"):
        welch_equivalence(*summaries, 2.0, min_n=1)


@pytest.mark.parametrize("margin", [0.0, -1.0, math.nan, math.inf])
def test_the_margin_must_be_positive(margin: float) -> None:
    with pytest.raises(ValueError, match="margin"):
        welch_equivalence(Summary.of(SITE), Summary.of(REFERENCE), margin)
    with pytest.raises(ValueError, match="margin"):
        paired_equivalence(list(zip(REFERENCE, SITE, strict=False)), margin)


@pytest.mark.parametrize("alpha", [0.0, 0.5, -0.05, 1.0])
def test_alpha_must_be_a_one_sided_level(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        welch_equivalence(Summary.of(SITE), Summary.of(REFERENCE), 2.0, alpha=alpha)


def test_identical_results_collapse_the_interval_to_the_difference() -> None:
    site, reference = Summary.of([100.5] * 4), Summary.of([100.0] * 5)
    result = welch_equivalence(site, reference, 1.0)
    assert result.difference == 0.5
    assert result.ci_low == result.ci_high == 0.5
    assert result.df is None  # Welch-Satterthwaite is 0/0 without any spread
    assert (result.p_lower, result.p_upper, result.p_tost) == (0.0, 0.0, 0.0)
    assert result.verdict is Verdict.COMPARABLE
    # A difference equal to the margin is not inside it.
    at_margin = welch_equivalence(site, reference, 0.5)
    assert at_margin.verdict is Verdict.NOT_SHOWN
    assert (at_margin.p_lower, at_margin.p_upper) == (0.0, 1.0)
    below = welch_equivalence(Summary.of([98.0] * 3), reference, 1.0)
    assert below.verdict is Verdict.NOT_SHOWN
    assert (below.p_lower, below.p_upper) == (1.0, 0.0)


def test_one_side_without_spread_takes_its_df_from_the_other_side() -> None:
    constant = [100.0, 100.0, 100.0]
    result = welch_equivalence(Summary.of(constant), Summary.of(REFERENCE), 2.0)
    with warnings.catch_warnings():
        # SciPy warns that a constant sample has no spread; that is the case under test.
        warnings.simplefilter("ignore", RuntimeWarning)
        welch = sps.ttest_ind(constant, REFERENCE, equal_var=False)
    assert result.df == rel(len(REFERENCE) - 1, 1e-12)
    assert result.df == rel(float(welch.df), 1e-12)
    assert result.ci_high == rel(float(welch.confidence_interval(0.90).high), 1e-10)


def test_tiny_variances_do_not_underflow_the_degrees_of_freedom() -> None:
    site = [1.0, 1.0 + 1e-160, 1.0 - 1e-160]  # rounds to no spread at all
    # The squared variances (about 1e-340) are below the smallest float; the scaled formula
    # gives the same df as for SDs of 1 and 2.
    tiny = Summary(n=3, mean=1.0, sd=1e-85)
    reference = Summary(n=4, mean=1.0, sd=2e-85)
    result = welch_equivalence(tiny, reference, 0.1)
    same_shape = welch_equivalence(
        Summary(n=3, mean=1.0, sd=1.0), Summary(n=4, mean=1.0, sd=2.0), 9.0
    )
    assert same_shape.df is not None
    assert result.df == rel(same_shape.df, 1e-12)
    assert result.verdict is Verdict.COMPARABLE
    assert welch_equivalence(Summary.of(site), reference, 0.1).verdict is Verdict.COMPARABLE


#
# Paired TOST (split starting material)
#

PAIRS = list(zip(REFERENCE[:6], SITE, strict=True))  # (reference, site)


@pytest.mark.parametrize("margin", [0.7, 1.5, 3.0])
def test_paired_interval_and_p_values_match_scipy(margin: float) -> None:
    references = [r for r, _ in PAIRS]
    sites = [s for _, s in PAIRS]
    differences = np.array(sites) - np.array(references)
    result = paired_equivalence(PAIRS, margin)

    rel_test = sps.ttest_rel(sites, references)
    one_sample = sps.ttest_1samp(differences, 0.0)
    assert result.paired is True
    assert result.df == len(PAIRS) - 1 == float(rel_test.df)
    assert result.difference == rel(float(differences.mean()), 1e-12)
    assert result.mean_site == rel(float(np.mean(sites)), 1e-15)
    assert result.mean_reference == rel(float(np.mean(references)), 1e-15)
    for ci in (rel_test.confidence_interval(0.90), one_sample.confidence_interval(0.90)):
        assert result.ci_low == rel(float(ci.low), 1e-10)
        assert result.ci_high == rel(float(ci.high), 1e-10)
    p_lower = sps.ttest_1samp(differences, -margin, alternative="greater").pvalue
    p_upper = sps.ttest_1samp(differences, margin, alternative="less").pvalue
    assert result.p_lower == rel(float(p_lower), 1e-9)
    assert result.p_upper == rel(float(p_upper), 1e-9)
    assert result.p_tost is not None
    assert (result.verdict is Verdict.COMPARABLE) == (result.p_tost < ALPHA)


def test_paired_takes_decimals_and_needs_three_pairs() -> None:
    decimal_pairs = [(Decimal(str(r)), Decimal(str(s))) for r, s in PAIRS]
    assert paired_equivalence(decimal_pairs, 1.5) == paired_equivalence(PAIRS, 1.5)
    two = paired_equivalence(PAIRS[:2], 1.5)
    assert two.verdict is Verdict.TOO_LITTLE_DATA
    assert (two.n_site, two.n_reference) == (2, 2)
    assert two.difference == pytest.approx((SITE[0] - REFERENCE[0] + SITE[1] - REFERENCE[1]) / 2)
    assert two.ci_low is None and two.p_tost is None
    none = paired_equivalence([], 1.5)
    assert none.verdict is Verdict.TOO_LITTLE_DATA
    assert none.difference is none.mean_site is None


def test_paired_removes_lot_to_lot_variation_that_welch_cannot() -> None:
    """Split lots vary a lot, but each site tracks the reference closely: paired shows
    comparability where the unpaired test on the same numbers does not."""
    lots = [92.0, 104.0, 97.0, 108.0, 95.0]
    pairs = [(lot, lot + 0.2 + 0.05 * (i % 2)) for i, lot in enumerate(lots)]
    paired = paired_equivalence(pairs, 1.0)
    unpaired = welch_equivalence(
        Summary.of(s for _, s in pairs), Summary.of(r for r, _ in pairs), 1.0
    )
    assert paired.verdict is Verdict.COMPARABLE
    assert unpaired.verdict is Verdict.NOT_SHOWN


def test_paired_identical_differences_collapse_the_interval() -> None:
    pairs = [(100.0, 100.25), (98.0, 98.25), (101.0, 101.25)]
    result = paired_equivalence(pairs, 0.5)
    assert result.ci_low == result.ci_high == result.difference == 0.25
    assert result.df is None
    assert result.verdict is Verdict.COMPARABLE


#
# The JSON form and the labels
#


def test_as_dict_is_json_ready_with_six_significant_digits() -> None:
    result = welch_equivalence(Summary.of(SITE), Summary.of(REFERENCE), 2.0)
    data = result.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["verdict"] == "comparable"
    assert data["paired"] is False
    assert data["n_site"] == 6
    assert data["ci_low"] == float(f"{result.ci_low:.6g}")
    assert data["df"] == float(f"{result.df:.6g}")
    assert set(data) == set(Equivalence.__dataclass_fields__)
    too_little = welch_equivalence(Summary.of([]), Summary.of(REFERENCE), 2.0).as_dict()
    assert too_little["verdict"] == "too_little_data"
    assert too_little["ci_low"] is None and too_little["mean_site"] is None


def test_verdict_and_rule_labels() -> None:
    assert [v.label for v in Verdict] == ["Comparable", "Not shown", "Too little data"]
    assert Verdict("not_shown") is Verdict.NOT_SHOWN
    assert str(Verdict.COMPARABLE) == "comparable"
    assert Rule.BEYOND_3SD.label == "Rule 1: a point beyond 3 SD"
    assert Rule.NINE_SAME_SIDE.label == (
        "Rule 2: nine points in a row on one side of the centre line"
    )
    assert all(rule.label.startswith(f"Rule {int(rule)}: ") for rule in Rule)


#
# Property: random data against SciPy
#

samples = st.lists(
    st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_subnormal=False),
    min_size=3,
    max_size=25,
)


def _spread_ok(values: list[float]) -> bool:
    # Far from "all equal", where float rounding decides the answer for SciPy and for us alike.
    scale = max(1.0, max(abs(v) for v in values))
    return float(np.std(values)) > 1e-6 * scale


@settings(max_examples=300, deadline=None)
@given(site=samples, reference=samples, margin=st.floats(min_value=0.01, max_value=1e4))
def test_welch_agrees_with_scipy_on_random_data(
    site: list[float], reference: list[float], margin: float
) -> None:
    assume(_spread_ok(site) and _spread_ok(reference))
    result = welch_equivalence(Summary.of(site), Summary.of(reference), margin)
    welch = sps.ttest_ind(site, reference, equal_var=False)
    ci = welch.confidence_interval(0.90)
    scale = max(abs(float(ci.low)), abs(float(ci.high)), 1e-12)
    assert result.df == pytest.approx(float(welch.df), rel=1e-7)
    assert result.ci_low == pytest.approx(float(ci.low), rel=1e-7, abs=1e-9 * scale)
    assert result.ci_high == pytest.approx(float(ci.high), rel=1e-7, abs=1e-9 * scale)
    p_upper = sps.ttest_ind(
        np.array(site) - margin, reference, equal_var=False, alternative="less"
    ).pvalue
    assert result.p_upper == pytest.approx(float(p_upper), rel=1e-6, abs=1e-12)
    # The verdict is the interval rule; it agrees with SciPy's interval unless a bound is
    # within rounding of the margin.
    assert result.ci_low is not None and result.ci_high is not None
    if min(abs(abs(float(ci.low)) - margin), abs(abs(float(ci.high)) - margin)) > 1e-6 * scale:
        expected = -margin < float(ci.low) and float(ci.high) < margin
        assert (result.verdict is Verdict.COMPARABLE) == expected


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_subnormal=False),
            st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_subnormal=False),
        ),
        min_size=3,
        max_size=20,
    ),
    margin=st.floats(min_value=0.01, max_value=1e3),
)
def test_paired_agrees_with_scipy_on_random_data(
    pairs: list[tuple[float, float]], margin: float
) -> None:
    differences = [s - r for r, s in pairs]
    assume(_spread_ok(differences))
    result = paired_equivalence(pairs, margin)
    ci = sps.ttest_rel([s for _, s in pairs], [r for r, _ in pairs]).confidence_interval(0.90)
    scale = max(abs(float(ci.low)), abs(float(ci.high)), 1e-12)
    assert result.ci_low == pytest.approx(float(ci.low), rel=1e-7, abs=1e-9 * scale)
    assert result.ci_high == pytest.approx(float(ci.high), rel=1e-7, abs=1e-9 * scale)


@settings(max_examples=300, deadline=None)
@given(
    p=st.floats(min_value=1e-15, max_value=1 - 1e-12),
    df=st.floats(min_value=0.5, max_value=1e6),
)
def test_t_quantile_agrees_with_scipy_on_random_arguments(p: float, df: float) -> None:
    expected = float(sps.t.ppf(p, df))
    assume(abs(expected) < 1e100)
    # Near p = 0.5 the quantile is near 0 and only absolutely accurate (p itself is rounded).
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-8, abs=1e-14)
    assert t_cdf(expected, df) == pytest.approx(p, rel=1e-8)


#
# Nelson rules
#

SIGMA = 1.0
CENTRE = 10.0


def breaks_of(values: list[float]) -> list[tuple[Rule, int, int]]:
    return [(b.rule, b.start, b.end) for b in nelson_breaks(values, CENTRE, SIGMA)]


def noise(n: int) -> list[float]:
    """A fixed series that breaks no rule: small steps around the centre that change direction
    irregularly (never 6 one way, never 9 on a side, never 14 alternating)."""
    pattern = [0.3, -0.2, 0.5, 0.1, -0.4, -0.1, 0.2, 0.6, -0.3, -0.5, 0.4, 0.35]
    return [CENTRE + pattern[i % len(pattern)] for i in range(n)]


def test_the_reference_noise_breaks_nothing() -> None:
    assert breaks_of(noise(60)) == []


def test_rule_1_marks_each_point_beyond_3_sd_on_either_side() -> None:
    values = noise(20)
    values[4] = CENTRE + 3.01
    values[11] = CENTRE - 4.5
    values[15] = CENTRE + 3.0  # exactly at 3 SD is not beyond it
    found = nelson_breaks(values, CENTRE, SIGMA)
    assert found == [RuleBreak(Rule.BEYOND_3SD, 4, 4), RuleBreak(Rule.BEYOND_3SD, 11, 11)]
    assert [list(b.points) for b in found] == [[4], [11]]


def test_rule_2_nine_on_one_side_is_one_break_marked_from_the_ninth_point() -> None:
    values = noise(5) + [CENTRE + 0.5] * 12 + noise(5)
    # noise(5) ends below the centre and restarts above it: the run is exactly 5..16 plus any
    # neighbouring point above the centre.
    found = [b for b in nelson_breaks(values, CENTRE, SIGMA) if b.rule is Rule.NINE_SAME_SIDE]
    assert len(found) == 1
    run = found[0]
    assert all(values[i] > CENTRE for i in range(run.start, run.end + 1))
    assert values[run.start - 1] < CENTRE and values[run.end + 1] < CENTRE
    assert list(run.points) == list(range(run.start + 8, run.end + 1))


def test_rule_2_below_the_centre_and_eight_is_not_enough() -> None:
    assert breaks_of([CENTRE - 0.5] * 9) == [(Rule.NINE_SAME_SIDE, 0, 8)]
    assert breaks_of([CENTRE - 0.5] * 8) == []
    assert breaks_of([CENTRE + 0.5] * 8 + [CENTRE - 0.5] * 8) == []


def test_a_point_on_the_centre_line_ends_a_run() -> None:
    values = [CENTRE + 0.5] * 5 + [CENTRE] + [CENTRE + 0.5] * 5
    assert breaks_of(values) == []
    values = [CENTRE + 0.5] * 5 + [CENTRE] + [CENTRE + 0.5] * 9
    assert breaks_of(values) == [(Rule.NINE_SAME_SIDE, 6, 14)]


def test_rule_3_six_rising_or_falling() -> None:
    rising = [CENTRE - 1 + 0.3 * i for i in range(6)]
    assert breaks_of(rising) == [(Rule.SIX_TRENDING, 0, 5)]
    [only] = nelson_breaks(rising, CENTRE, SIGMA)
    assert list(only.points) == [5]
    falling = [CENTRE + 1 - 0.3 * i for i in range(7)]
    assert breaks_of(falling) == [(Rule.SIX_TRENDING, 0, 6)]
    assert list(nelson_breaks(falling, CENTRE, SIGMA)[0].points) == [5, 6]


def test_rule_3_five_rising_is_not_a_trend_and_a_tie_ends_one() -> None:
    assert breaks_of([CENTRE - 1 + 0.3 * i for i in range(5)]) == []
    tied = [9.0, 9.2, 9.4, 9.4, 9.6, 9.8, 10.2]  # 3 rising, a tie, 4 rising
    assert breaks_of(tied) == []


def test_rule_3_a_peak_belongs_to_the_rise_and_to_the_fall() -> None:
    values = [9.0, 9.2, 9.4, 9.6, 9.8, 10.4, 10.2, 10.0, 9.9, 9.7, 9.5]
    assert breaks_of(values) == [(Rule.SIX_TRENDING, 0, 5), (Rule.SIX_TRENDING, 5, 10)]


def zigzag(n: int, start: int = 0) -> list[float]:
    return [CENTRE + (0.5 if (i + start) % 2 else -0.4) + 0.01 * i for i in range(n)]


def test_rule_4_fourteen_alternating() -> None:
    values = zigzag(14)
    assert breaks_of(values) == [(Rule.FOURTEEN_ALTERNATING, 0, 13)]
    assert list(nelson_breaks(values, CENTRE, SIGMA)[0].points) == [13]


def test_rule_4_thirteen_alternating_is_not_enough() -> None:
    assert breaks_of(zigzag(13)) == []


def test_rule_4_a_zero_step_or_two_steps_the_same_way_end_the_alternation() -> None:
    values = zigzag(8)
    values.append(values[-1])  # a repeated value: zero step
    values += zigzag(8, start=1)
    assert breaks_of(values) == []
    same_way = [*zigzag(8), zigzag(8)[-1] + 0.2, *zigzag(6)]
    assert not [b for b in breaks_of(same_way) if b[0] is Rule.FOURTEEN_ALTERNATING]


def test_small_sine_breaks_nothing() -> None:
    values = [CENTRE + 0.4 * math.sin(2 * math.pi * i / 7.3) for i in range(80)]
    assert breaks_of(values) == []


@pytest.mark.parametrize(
    ("rule", "series"),
    [
        (Rule.NINE_SAME_SIDE, [CENTRE + 0.5] * 16),
        (Rule.SIX_TRENDING, [CENTRE - 2 + 0.2 * i for i in range(16)]),
        (Rule.FOURTEEN_ALTERNATING, zigzag(20)),
    ],
)
def test_a_growing_run_keeps_its_start(rule: Rule, series: list[float]) -> None:
    """The caller raises one signal per (rule, start): adding results to a run must not move
    its start, only its end and its marked points."""
    seen = []
    for n in range(rule.run_length, len(series) + 1):
        [found] = [b for b in nelson_breaks(series[:n], CENTRE, SIGMA) if b.rule is rule]
        seen.append((found.start, found.end))
    assert {start for start, _ in seen} == {0}
    assert [end for _, end in seen] == list(range(rule.run_length - 1, len(series)))


def test_breaks_are_sorted_and_flagged_points_merge_rules() -> None:
    values = [CENTRE + 0.5] * 8 + [CENTRE + 3.5]  # nine above; the ninth is also beyond 3 SD
    found = nelson_breaks(values, CENTRE, SIGMA)
    assert [(b.rule, b.start, b.end) for b in found] == [
        (Rule.NINE_SAME_SIDE, 0, 8),
        (Rule.BEYOND_3SD, 8, 8),
    ]
    assert flagged_points(found) == {8: [1, 2]}
    assert flagged_points([]) == {}


def test_flagged_points_list_every_point_of_each_break_once() -> None:
    values = noise(2) + [CENTRE + 0.5] * 11 + [CENTRE - 5.0]
    flagged = flagged_points(nelson_breaks(values, CENTRE, SIGMA))
    assert flagged == {10: [2], 11: [2], 12: [2], 13: [1]}
    assert list(flagged) == sorted(flagged)


def test_nelson_takes_decimals_and_refuses_a_sigma_that_is_not_positive() -> None:
    values = [Decimal("10.5")] * 9
    assert nelson_breaks(values, 10.0, 1.0) == [RuleBreak(Rule.NINE_SAME_SIDE, 0, 8)]
    for sigma in (0.0, -1.0):
        with pytest.raises(ValueError, match="sigma"):
            nelson_breaks(values, 10.0, sigma)
    with pytest.raises(ValueError, match="finite"):
        nelson_breaks([1.0, math.nan], 10.0, 1.0)
    assert nelson_breaks([], 10.0, 1.0) == []
    assert nelson_breaks([12.0], 10.0, 1.0) == []
