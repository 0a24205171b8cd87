"""Trust scoring: formulas, priors, percentiles, index, vetoes, explanations, catalogue.

Everything is checked against the plain-Python reference below (``ref_score``: loops over
merchants and categories, written from the formulas of ``ecomcore.trust_scoring``'s docstring),
against numbers computed by hand, and against the golden values of the reference sheet.
"""

from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ecomcore
from ecomcore.indicators import DIMENSIONS, DIRECTIONS, KINDS, Indicator, default_indicators
from ecomcore.trust_scoring import (
    PRIOR_SOURCES,
    TrustPriors,
    TrustScores,
    bayesian_average,
    beta_mean,
    score_state,
    wilson_lower_bound,
)
from ecomcore.trust_stats import TrustStats

DAY = 86400.0
NOW = 1.7e9


# ----------------------------------------------------------------------------- helpers


def make_model(indicators, n_merchants, **kw):
    """A stand-in for TrustModel with the attributes score_state reads."""
    base = dict(
        indicators=tuple(indicators),
        indicator_index={ind.name: k for k, ind in enumerate(indicators)},
        n_merchants=n_merchants,
        half_life_days=90.0,
        prior_strength=20.0,
        dedupe_days=10.0,
        categories=None,
        dimension_weights=None,
        veto_floor=0.2,
        veto_days=180.0,
        cautious=False,
        z=1.96,
        guarantee_boost=0.05,
        min_category_merchants=5,
        n_threads=1,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def make_stats(n, s, s2=None, veto_time=None, events=None, now=NOW):
    n = np.asarray(n, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    if s2 is None:
        s2 = s.copy()
    if veto_time is None:
        veto_time = np.full(n.shape[0], -np.inf)
    if events is None:
        events = np.ceil(np.nan_to_num(n, posinf=0.0, neginf=0.0)).astype(np.int64)
    return TrustStats(now=now, n=n, s=s, s2=np.asarray(s2, dtype=np.float64), events=events, veto_time=veto_time)


def random_problem(rng, n_merchants, indicators, *, n_cat=3, p_empty=0.3, decay=True):
    """Realistic decayed statistics: whole events with weights in (0.2, 1]."""
    M, inds = n_merchants, list(indicators)
    n = np.zeros((M, len(inds)))
    s = np.zeros_like(n)
    s2 = np.zeros_like(n)
    q = rng.random(M)  # merchant quality
    for m in range(M):
        for i, ind in enumerate(inds):
            if rng.random() < p_empty:
                continue
            k = int(rng.integers(1, 12))
            w = rng.uniform(0.2, 1.0, k) if decay else np.ones(k)
            if ind.kind == "rate":
                v = (rng.random(k) < 0.15 + 0.7 * q[m]).astype(float)
            elif ind.kind == "rating":
                v = np.clip(np.round(rng.normal(2 + 3 * q[m], 1.0, k)), 1, 5)
            else:
                v = rng.gamma(2.0, 5 + 30 * q[m], k)
                if rng.random() < 0.2:
                    v[:] = np.round(v[0])  # exact ties across merchants
                    w[:] = 1.0
            n[m, i] = w.sum()
            s[m, i] = (w * v).sum()
            s2[m, i] = (w * v * v).sum()
    cats = rng.integers(0, n_cat, M)
    return n, s, s2, cats


def small_catalogue():
    return (
        Indicator("good", "product_quality", "rate", "higher", weight=2.0),
        Indicator("refund", "after_sales", "rate", "lower", veto=False),
        Indicator("fake", "product_quality", "rate", "lower", veto=True),
        Indicator("stars", "product_experience", "rating", "higher"),
        Indicator("grumpy", "host_conduct", "rating", "lower"),
        Indicator("ship_h", "service_quality", "magnitude", "lower"),
        Indicator("volume", "social_evaluation", "magnitude", "higher", weight=0.5),
    )


# ----------------------------------------------------------------------------- reference


def ref_priors(inds, n, s, s2, events, cats, prior_strength, min_merchants):
    """Per (category label, indicator) prior (mean, strength, source), by loops."""
    labels = sorted(set(int(c) for c in cats))
    out = {}
    for i, ind in enumerate(inds):
        ev = [m for m in range(n.shape[0]) if n[m, i] > 0]
        tot_n = sum(n[m, i] for m in ev)
        tot_s = sum(s[m, i] for m in ev)
        default = {"rate": 0.5, "rating": 3.0, "magnitude": 0.0}[ind.kind]
        g = tot_s / tot_n if tot_n > 0 else default
        g = min(max(g, 0.0), 1.0) if ind.kind == "rate" else (min(max(g, 1.0), 5.0) if ind.kind == "rating" else g)
        for c in labels:
            if ind.prior is not None:
                if ind.kind == "rate":
                    a, b = ind.prior
                    out[c, i] = (a / (a + b), a + b, 0)
                else:
                    out[c, i] = (ind.prior[0], ind.prior[1], 0)
                continue
            members = [m for m in ev if cats[m] == c]
            size = sum(1 for m in range(n.shape[0]) if cats[m] == c)
            fit = None
            J = len(members)
            if size >= min_merchants and J >= min_merchants:
                k = {m: float(events[m, i]) for m in members}
                x = {m: s[m, i] / n[m, i] for m in members}
                v = {m: max(s2[m, i] / n[m, i] - x[m] ** 2, 0.0) for m in members}
                K = sum(k.values())
                mu = sum(k[m] * x[m] for m in members) / K
                if K > J and K - sum(kk * kk for kk in k.values()) / K > 0:
                    sw2 = sum(k[m] * v[m] for m in members) / (K - J)
                    ssb = sum(k[m] * (x[m] - mu) ** 2 for m in members)
                    tau2 = (ssb - (J - 1) * sw2) / (K - sum(kk * kk for kk in k.values()) / K)
                    if tau2 > 0:
                        if ind.kind == "rate":
                            if tau2 < mu * (1 - mu):
                                fit = (mu, mu * (1 - mu) / tau2 - 1)
                        elif sw2 > 0:
                            fit = (mu, sw2 / tau2)
            if fit is not None and fit[1] > 0 and math.isfinite(fit[1]):
                out[c, i] = (fit[0], fit[1], 1)
            else:
                out[c, i] = (g, prior_strength, 2)
    return labels, out


def ref_score(model, stats, categories=None, guarantee=None, priors=None):
    """Plain loops over merchants, indicators and categories."""
    inds = model.indicators
    n, s, s2 = stats.n, stats.s, stats.s2
    M, n_ind = n.shape
    cats = np.zeros(M, dtype=np.int64) if categories is None else np.asarray(categories)
    if priors is None:
        labels, pri = ref_priors(inds, n, s, s2, stats.events, cats, model.prior_strength, model.min_category_merchants)
    else:
        labels = [int(c) for c in priors.categories]
        pri = {
            (c, i): (priors.mean[r, i], priors.strength[r, i], int(priors.source[r, i]))
            for r, c in enumerate(labels)
            for i in range(n_ind)
        }
    est = np.zeros((M, n_ind))
    norm = {}
    for i, ind in enumerate(inds):
        lower = ind.direction == "lower"
        if ind.kind in ("rate", "rating"):

            def one(sv, nv, mean, k, ind=ind, lower=lower):
                x = bayesian_average(sv, nv, mean, k)
                e = float(np.clip(x if ind.kind == "rate" else (x - 1) / 4, 0, 1))
                e = 1 - e if lower else e
                return float(wilson_lower_bound(e, nv + k, model.z)) if model.cautious else e

            for c in labels:
                mean, k, _ = pri[c, i]
                norm[c, i] = one(0.0, 0.0, mean, k)
            for m in range(M):
                mean, k, _ = pri[int(cats[m]), i]
                est[m, i] = one(s[m, i], n[m, i], mean, k)
        else:
            y = {}
            for m in range(M):
                mean, k, _ = pri[int(cats[m]), i]
                y[m] = (s[m, i] + mean * k) / (n[m, i] + k)
            for c in labels:
                R = [m for m in range(M) if cats[m] == c and n[m, i] > 0]
                mean, _, _ = pri[c, i]
                lt = sum(1 for j in R if y[j] < mean)
                le = sum(1 for j in R if y[j] <= mean)
                f = ((lt + le) / 2 + 0.5) / (len(R) + 1)
                norm[c, i] = 1 - f if lower else f
                for m in range(M):
                    if cats[m] != c:
                        continue
                    if n[m, i] > 0:
                        lt = sum(1 for j in R if y[j] < y[m])
                        le = sum(1 for j in R if y[j] <= y[m])
                        f = (lt + le) / (2 * len(R))
                        est[m, i] = 1 - f if lower else f
                    else:
                        est[m, i] = norm[c, i]
    dw = model.dimension_weights
    dweights = {d: 1.0 for d in DIMENSIONS} if dw is None else {d: float(dw.get(d, 0.0)) for d in DIMENSIONS}
    dims = np.full((M, len(DIMENSIONS)), np.nan)
    used = [d for d in DIMENSIONS if any(ind.dimension == d for ind in inds)]
    tot_w = sum(dweights[d] for d in used)
    W = np.zeros(n_ind)
    for d in used:
        members = [i for i, ind in enumerate(inds) if ind.dimension == d]
        wsum = sum(inds[i].weight for i in members)
        for i in members:
            W[i] = inds[i].weight / wsum * dweights[d] / tot_w
        col = DIMENSIONS.index(d)
        for m in range(M):
            dims[m, col] = sum(inds[i].weight / wsum * est[m, i] for i in members)
    uncapped = np.array([sum(dweights[d] / tot_w * dims[m, DIMENSIONS.index(d)] for d in used) for m in range(M)])
    uncapped = np.clip(uncapped, 0, 1)
    vetoed = np.array([stats.now - stats.veto_time[m] < model.veto_days * DAY for m in range(M)])
    index = np.where(vetoed, np.minimum(uncapped, model.veto_floor), uncapped)
    conf = np.array([sum(W[i] * n[m, i] / (n[m, i] + pri[int(cats[m]), i][1]) for i in range(n_ind)) for m in range(M)])
    return SimpleNamespace(
        index=index, dims=dims, est=est, conf=conf, vetoed=vetoed, W=W, labels=labels, pri=pri, norm=norm, cats=cats
    )


def assert_matches_reference(scores: TrustScores, ref, inds) -> None:
    np.testing.assert_allclose(scores.estimates, ref.est, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scores.index, ref.index, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scores.dimensions, ref.dims, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scores.confidence, ref.conf, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(scores.vetoed, ref.vetoed)
    np.testing.assert_allclose(scores.weights, ref.W, rtol=1e-12)
    assert list(scores.priors.categories) == ref.labels
    for r, c in enumerate(ref.labels):
        for i in range(len(inds)):
            mean, k, src = ref.pri[c, i]
            assert scores.priors.source[r, i] == src, (c, inds[i].name)
            assert scores.priors.mean[r, i] == pytest.approx(mean, rel=1e-12, abs=1e-15)
            assert scores.priors.strength[r, i] == pytest.approx(k, rel=1e-9)
            assert scores.norms[r, i] == pytest.approx(ref.norm[c, i], rel=1e-12, abs=1e-12)


# ----------------------------------------------------------------------------- golden values


def test_golden_values_of_the_reference_sheet():
    # 3 x 5 stars against 2,400 x 5 + 600 x 4 stars (mean 4.8)
    small_s, small_n = 15.0, 3.0
    big_s, big_n = 2400 * 5.0 + 600 * 4.0, 3000.0
    a, b = bayesian_average([small_s, big_s], [small_n, big_n], 4.5, 50)
    assert round(float(a), 3) == 4.528 and round(float(b), 3) == 4.795 and a < b
    for m in (2.01, 3, 10, 100, 1000):  # any m > 2 keeps the order
        a, b = bayesian_average([small_s, big_s], [small_n, big_n], 4.5, m)
        assert a < b
    # Wilson lower bound, z = 1.96, on the rating as a fraction of 5 (the sheet's 0.952 is p = 4.8/5)
    # (3 / (3 + 1.96**2) = 0.43849: the sheet rounds it to 0.439, so compare within 1e-3)
    lo_small, lo_big = wilson_lower_bound([1.0, 4.8 / 5], [3, 3000], 1.96)
    assert lo_small == pytest.approx(3 / (3 + 1.96**2), rel=1e-12)
    assert lo_small == pytest.approx(0.439, abs=1e-3) and round(float(lo_big), 3) == 0.952
    # Beta(1, 1): 3 successes of 3 against 2,880 of 3,000 (= 0.96 * 3000)
    p_small, p_big = beta_mean([3, 0.96 * 3000], [3, 3000])
    assert round(float(p_small), 3) == 0.800 and round(float(p_big), 3) == 0.960


def test_golden_bayesian_average_through_the_kernel():
    stars = Indicator("stars", "product_experience", "rating", "higher", prior=(4.5, 50))
    model = make_model([stars], 2)
    stats = make_stats([[3.0], [3000.0]], [[15.0], [14400.0]], s2=[[75.0], [2400 * 25 + 600 * 16.0]])
    sc = score_state(model, stats, categories=None, guarantee=None, priors=None)
    x = 1 + 4 * sc.estimates[:, 0]
    assert x[0] == pytest.approx(240 / 53, rel=1e-12) and round(x[0], 3) == 4.528
    assert x[1] == pytest.approx(14625 / 3050, rel=1e-12) and round(x[1], 3) == 4.795
    assert sc.index[0] < sc.index[1]
    assert sc.priors.source[0, 0] == PRIOR_SOURCES.index("explicit")


def population_with_two_sellers(rng, n_others=30):
    """Merchant 0: 3 x 5 stars; merchant 1: 2,400 x 5 + 600 x 4; others: typical shops (mean ~4.2)."""
    n = [3.0, 3000.0]
    s = [15.0, 14400.0]
    s2 = [75.0, 2400 * 25 + 600 * 16.0]
    for _ in range(n_others):
        k = int(rng.integers(20, 200))
        v = np.clip(np.round(rng.normal(rng.uniform(3.6, 4.7), 0.9, k)), 1, 5)
        n.append(float(k))
        s.append(float(v.sum()))
        s2.append(float((v * v).sum()))
    col = lambda x: np.array(x)[:, None]  # noqa: E731
    return col(n), col(s), col(s2)


@pytest.mark.parametrize("fit", [True, False])
def test_three_perfect_reviews_rank_below_three_thousand_at_4_8(fit):
    rng = np.random.default_rng(0)
    stars = Indicator("stars", "product_experience", "rating", "higher")
    n, s, s2 = population_with_two_sellers(rng)
    # fit: enough merchants for the empirical-Bayes prior; else the global mean with prior_strength 20
    model = make_model([stars], n.shape[0], min_category_merchants=5 if fit else 10_000)
    sc = score_state(model, make_stats(n, s, s2), categories=None, guarantee=None, priors=None)
    assert sc.priors.source[0, 0] == (1 if fit else 2)
    assert sc.priors.mean[0, 0] < 4.8
    assert sc.index[0] < sc.index[1]
    assert 1 + 4 * sc.estimates[0, 0] < 1 + 4 * sc.estimates[1, 0]


def test_cautious_ranks_three_perfect_reviews_below_even_with_a_prior_at_4_8():
    # with only the two merchants the global prior mean is 4.8: the posterior mean of 3 x 5 stars
    # is then (correctly) above 4.8; the cautious lower bound still ranks the big shop first.
    stars = Indicator("stars", "product_experience", "rating", "higher")
    stats = make_stats([[3.0], [3000.0]], [[15.0], [14400.0]], s2=[[75.0], [2400 * 25 + 600 * 16.0]])
    plain = score_state(make_model([stars], 2), stats, categories=None, guarantee=None, priors=None)
    assert plain.index[0] > plain.index[1]
    careful = score_state(make_model([stars], 2, cautious=True), stats, categories=None, guarantee=None, priors=None)
    assert careful.index[0] < careful.index[1]
    k = careful.priors.strength[0, 0]
    p = (plain.estimates[:, 0], np.array([3.0, 3000.0]) + k)
    np.testing.assert_allclose(careful.estimates[:, 0], wilson_lower_bound(*p, 1.96), rtol=1e-12)


@given(
    n=st.floats(0, 1e4),
    mean_x=st.floats(1, 5),
    c=st.floats(1, 5),
    m=st.floats(0.01, 1e3),
)
def test_shrinkage_bound(n, mean_x, c, m):
    shrunk = float(bayesian_average(n * mean_x, n, c, m))
    assert abs(shrunk - mean_x) <= m * abs(c - mean_x) / (n + m) * (1 + 1e-9) + 1e-12


def test_shrinkage_bound_through_the_kernel():
    rng = np.random.default_rng(3)
    stars = Indicator("stars", "product_experience", "rating", "higher", prior=(3.7, 12.0))
    k = rng.integers(1, 60, 50).astype(float)
    xbar = rng.uniform(1, 5, 50)
    stats = make_stats(k[:, None], (k * xbar)[:, None], (k * xbar * xbar)[:, None])
    sc = score_state(make_model([stars], 50), stats, categories=None, guarantee=None, priors=None)
    shrunk = 1 + 4 * sc.estimates[:, 0]
    assert np.all(np.abs(shrunk - xbar) <= 12 * np.abs(3.7 - xbar) / (k + 12) + 1e-12)


# ----------------------------------------------------------------------------- empirical Bayes


def test_empirical_bayes_rate_prior_by_hand():
    good = Indicator("good", "product_quality", "rate", "higher")
    # five merchants, whole counts: (n, s)
    data = [(10, 2), (20, 14), (10, 5), (30, 27), (10, 9)]
    n = np.array([[float(a)] for a, _ in data])
    s = np.array([[float(b)] for _, b in data])
    sc = score_state(make_model([good], 5), make_stats(n, s), categories=None, guarantee=None, priors=None)
    # by hand (no decay: k = n): K = 80, mu = 57/80; within SS = sum n p(1-p); between SS = sum n (p - mu)^2
    K, J = 80.0, 5
    mu = 57 / 80
    p = [b / a for a, b in data]
    ssw = sum(a * q * (1 - q) for (a, _), q in zip(data, p))
    ssb = sum(a * (q - mu) ** 2 for (a, _), q in zip(data, p))
    sw2 = ssw / (K - J)
    tau2 = (ssb - (J - 1) * sw2) / (K - (100 + 400 + 100 + 900 + 100) / K)
    kappa = mu * (1 - mu) / tau2 - 1
    assert tau2 > 0 and kappa > 0
    assert sc.priors.source[0, 0] == PRIOR_SOURCES.index("empirical_bayes")
    assert sc.priors.mean[0, 0] == pytest.approx(0.7125, rel=1e-12)
    assert sc.priors.strength[0, 0] == pytest.approx(kappa, rel=1e-9)
    assert sc.priors.alpha[0, 0] == pytest.approx(mu * kappa, rel=1e-9)
    assert sc.priors.beta[0, 0] == pytest.approx((1 - mu) * kappa, rel=1e-9)
    # the posterior mean of merchant 0 under Beta(a0, b0)
    assert sc.estimates[0, 0] == pytest.approx((2 + mu * kappa) / (10 + kappa), rel=1e-12)


def test_empirical_bayes_rating_prior_by_hand():
    stars = Indicator("stars", "product_experience", "rating", "higher")
    ratings = [[5, 5, 4], [3, 4, 2, 3], [5, 4, 5, 5, 4], [1, 2, 3], [4, 4, 5, 3]]
    n = np.array([[float(len(r))] for r in ratings])
    s = np.array([[float(sum(r))] for r in ratings])
    s2 = np.array([[float(sum(x * x for x in r))] for r in ratings])
    sc = score_state(make_model([stars], 5), make_stats(n, s, s2), categories=None, guarantee=None, priors=None)
    J = 5
    N = sum(len(r) for r in ratings)  # 19
    mu = sum(sum(r) for r in ratings) / N
    ssw = sum(sum((x - sum(r) / len(r)) ** 2 for x in r) for r in ratings)
    ssb = sum(len(r) * (sum(r) / len(r) - mu) ** 2 for r in ratings)
    sw2 = ssw / (N - J)
    n0 = (N - sum(len(r) ** 2 for r in ratings) / N) / (J - 1)
    tau2 = (ssb / (J - 1) - sw2) / n0
    assert sc.priors.source[0, 0] == 1
    assert sc.priors.mean[0, 0] == pytest.approx(mu, rel=1e-12)
    assert sc.priors.strength[0, 0] == pytest.approx(sw2 / tau2, rel=1e-9)


@pytest.mark.parametrize(
    "case",
    ["too_few_merchants", "zero_variance", "variance_above_bernoulli", "no_within_df", "rating_no_within_variance"],
)
def test_empirical_bayes_clamps_to_the_global_prior(case):
    kind = "rating" if case == "rating_no_within_variance" else "rate"
    ind = Indicator("x", "product_quality", kind, "higher")
    min_m = 5
    if case == "too_few_merchants":
        n, s = [10.0] * 4, [2.0, 4.0, 6.0, 9.0]
    elif case == "zero_variance":
        n, s = [10.0, 20.0, 10.0, 40.0, 10.0, 30.0], [3.0, 6.0, 3.0, 12.0, 3.0, 9.0]
    elif case == "variance_above_bernoulli":
        n, s = [10.0] * 6, [10.0, 0.0, 10.0, 0.0, 10.0, 0.0]
    elif case == "no_within_df":  # decayed counts below one event each
        n, s = [0.5, 0.9, 0.3, 0.7, 0.6, 0.2], [0.5, 0.0, 0.3, 0.7, 0.0, 0.2]
    else:  # every merchant always gives the same rating
        n = [3.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        s = [3 * 5.0, 4 * 2.0, 2 * 4.0, 5 * 3.0, 3 * 1.0, 6 * 5.0]
    n = np.array(n)[:, None]
    s = np.array(s)[:, None]
    s2 = s * s / n if kind == "rating" else s
    model = make_model([ind], n.shape[0], min_category_merchants=min_m, prior_strength=7.0)
    sc = score_state(model, make_stats(n, s, s2), categories=None, guarantee=None, priors=None)
    assert sc.priors.source[0, 0] == PRIOR_SOURCES.index("global"), case
    assert sc.priors.mean[0, 0] == pytest.approx(s.sum() / n.sum(), rel=1e-12)
    assert sc.priors.strength[0, 0] == 7.0


def test_small_categories_fall_back_while_big_ones_fit():
    rng = np.random.default_rng(5)
    inds = small_catalogue()
    n, s, s2, _ = random_problem(rng, 80, inds, p_empty=0.0, decay=False)
    cats = np.array([7] * 70 + [3] * 6 + [11] * 4)  # category 11 has 4 merchants
    model = make_model(inds, 80, categories=cats)
    sc = score_state(model, make_stats(n, s, s2), categories=None, guarantee=None, priors=None)
    assert list(sc.priors.categories) == [3, 7, 11]
    assert (sc.priors.source[2] == PRIOR_SOURCES.index("global")).all()
    assert (sc.priors.source[1] == PRIOR_SOURCES.index("empirical_bayes")).any()
    assert_matches_reference(sc, ref_score(model, make_stats(n, s, s2), cats), inds)


def test_explicit_priors_win():
    inds = (
        Indicator("good", "product_quality", "rate", "higher", prior=(3.0, 1.0)),
        Indicator("ship", "service_quality", "magnitude", "lower", prior=(48.0, 5.0)),
    )
    rng = np.random.default_rng(1)
    n, s, s2, cats = random_problem(rng, 40, inds, p_empty=0.0)
    model = make_model(inds, 40)
    sc = score_state(model, make_stats(n, s, s2), categories=None, guarantee=None, priors=None)
    assert (sc.priors.source == 0).all()
    np.testing.assert_allclose(sc.priors.mean[0], [0.75, 48.0])
    np.testing.assert_allclose(sc.priors.strength[0], [4.0, 5.0])


# ----------------------------------------------------------------------------- against the reference


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cautious", [False, True])
def test_matches_reference(seed, cautious):
    rng = np.random.default_rng(seed)
    inds = small_catalogue()
    M = 60
    n, s, s2, cats = random_problem(rng, M, inds, n_cat=2 + seed % 3)
    veto = np.full(M, -np.inf)
    veto[rng.integers(0, M, 5)] = NOW - rng.uniform(0, 400, 5) * DAY
    dw = (
        None
        if seed % 2
        else {
            "product_quality": 2.0,
            "after_sales": 1.0,
            "service_quality": 0.5,
            "host_conduct": 1.0,
            "social_evaluation": 1.0,
        }
    )
    model = make_model(inds, M, categories=cats, cautious=cautious, dimension_weights=dw, min_category_merchants=4)
    stats = make_stats(n, s, s2, veto_time=veto)
    sc = score_state(model, stats, categories=None, guarantee=None, priors=None)
    ref = ref_score(model, stats, cats)
    assert_matches_reference(sc, ref, inds)
    if dw is not None:  # product_experience is omitted: weight 0
        assert sc.weights[3] == 0.0
    assert np.all((sc.index >= 0) & (sc.index <= 1))
    # frozen priors give the same scores, and other threads the same bits
    again = score_state(model, stats, categories=None, guarantee=None, priors=sc.priors)
    np.testing.assert_array_equal(again.index, sc.index)
    two = score_state(
        make_model(
            inds, M, categories=cats, cautious=cautious, dimension_weights=dw, min_category_merchants=4, n_threads=2
        ),
        stats,
        categories=None,
        guarantee=None,
        priors=None,
    )
    np.testing.assert_array_equal(two.index, sc.index)
    np.testing.assert_array_equal(two.estimates, sc.estimates)


def test_categories_argument_overrides_the_model_and_labels_may_be_sparse():
    rng = np.random.default_rng(9)
    inds = small_catalogue()
    n, s, s2, _ = random_problem(rng, 50, inds)
    cats = rng.choice([10**12, 5, -3], 50)
    model = make_model(inds, 50, categories=np.zeros(50, dtype=np.int64), min_category_merchants=3)
    stats = make_stats(n, s, s2)
    sc = score_state(model, stats, categories=cats, guarantee=None, priors=None)
    assert list(sc.priors.categories) == [-3, 5, 10**12]
    assert_matches_reference(sc, ref_score(model, stats, cats), inds)


def test_magnitude_percentiles_with_ties_and_no_evidence():
    ship = Indicator("ship", "service_quality", "magnitude", "lower", prior=(10.0, 1.0))
    vol = Indicator("vol", "social_evaluation", "magnitude", "higher", prior=(10.0, 1.0))
    # shrunk means (s + 10) / (n + 1) with n = 1: (s + 10) / 2
    s_vals = [10.0, 10.0, 30.0, 0.0, 0.0]  # -> 10, 10, 20, 5, and merchant 4 has no evidence
    n = np.array([[1.0, 1.0]] * 4 + [[0.0, 0.0]])
    s = np.array([[v, v] for v in s_vals])
    sc = score_state(make_model([ship, vol], 5), make_stats(n, s, s * s), categories=None, guarantee=None, priors=None)
    # R = {5, 10, 10, 20}; mid-rank percentiles (#< + #<=) / (2 |R|)
    f = np.array([(1 + 3) / 8, (1 + 3) / 8, (3 + 4) / 8, (0 + 1) / 8])
    np.testing.assert_allclose(sc.estimates[:4, 1], f)  # higher is better
    np.testing.assert_allclose(sc.estimates[:4, 0], 1 - f)  # lower is better
    # no evidence: the norm, the prior mean 10 ranked into R u {itself}: ((1 + 3) / 2 + 0.5) / 5
    assert sc.estimates[4, 1] == pytest.approx(0.5)
    assert sc.norms[0, 1] == pytest.approx(0.5) and sc.norms[0, 0] == pytest.approx(0.5)


def test_empty_state_and_single_merchant():
    inds = small_catalogue()
    model = make_model(inds, 0)
    z = np.zeros((0, len(inds)))
    sc = score_state(model, make_stats(z, z), categories=None, guarantee=None, priors=None)
    assert sc.index.shape == (0,) and sc.estimates.shape == (0, len(inds)) and sc.dimensions.shape == (0, 6)
    one = score_state(
        make_model(inds, 1),
        make_stats(np.zeros((1, 7)), np.zeros((1, 7))),
        categories=None,
        guarantee=None,
        priors=None,
    )
    # no evidence anywhere: neutral estimates (0.5 for rates and ratings at the default means, 0.5 percentiles)
    np.testing.assert_allclose(one.estimates, 0.5)
    assert one.index[0] == pytest.approx(0.5)
    assert one.confidence[0] == 0.0 and one.explain(0) == []


def test_dimension_without_indicators_is_nan_and_excluded():
    inds = (Indicator("good", "product_quality", "rate", "higher"),)
    stats = make_stats([[10.0], [10.0]], [[9.0], [1.0]])
    sc = score_state(make_model(inds, 2), stats, categories=None, guarantee=None, priors=None)
    assert np.isnan(sc.dimensions[:, 1:]).all()
    np.testing.assert_allclose(sc.index, sc.dimensions[:, 0])


# ----------------------------------------------------------------------------- monotonicity


def _cell_event(ind, positive, shrunk, rng):
    """A value on the good (positive) or bad side of the merchant's current shrunk mean."""
    if ind.kind == "rate":
        good = 1.0 if ind.direction == "higher" else 0.0
        return good if positive else 1.0 - good
    if ind.kind == "rating":
        hi_good = ind.direction == "higher"
        if positive == hi_good:
            return float(rng.uniform(shrunk, 5.0))
        return float(rng.uniform(1.0, shrunk))
    hi_good = ind.direction == "higher"
    if positive == hi_good:
        return float(shrunk * rng.uniform(1.0, 3.0) + rng.uniform(0, 5))
    return float(shrunk * rng.uniform(0.0, 1.0))


@given(seed=st.integers(0, 10**6), cautious=st.booleans(), positive=st.booleans(), w=st.floats(0.01, 1.0))
def test_frozen_priors_monotone(seed, cautious, positive, w):
    rng = np.random.default_rng(seed)
    inds = small_catalogue()
    M = 12
    n, s, s2, cats = random_problem(rng, M, inds, n_cat=2)
    model = make_model(inds, M, categories=cats, cautious=cautious, min_category_merchants=3)
    before = score_state(model, make_stats(n, s, s2), categories=None, guarantee=None, priors=None)
    m, i = int(rng.integers(M)), int(rng.integers(len(inds)))
    ind = inds[i]
    row = before.category_rows[m]
    mean, k = before.priors.mean[row, i], before.priors.strength[row, i]
    shrunk = (s[m, i] + mean * k) / (n[m, i] + k)
    v = _cell_event(ind, positive, shrunk, rng)
    if cautious and ind.kind == "rating":
        v = 5.0 if positive == (ind.direction == "higher") else 1.0  # cautious: extreme ratings only
    n2, s_2, s22 = n.copy(), s.copy(), s2.copy()
    n2[m, i] += w
    s_2[m, i] += w * v
    s22[m, i] += w * v * v
    after = score_state(model, make_stats(n2, s_2, s22), categories=None, guarantee=None, priors=before.priors)
    if positive:
        assert after.index[m] >= before.index[m] - 1e-12
        assert after.estimates[m, i] >= before.estimates[m, i] - 1e-12
    else:
        assert after.index[m] <= before.index[m] + 1e-12
        assert after.estimates[m, i] <= before.estimates[m, i] + 1e-12


# ----------------------------------------------------------------------------- vetoes, boost, explain


def test_veto_caps_the_index_whatever_else():
    good = Indicator("good", "product_quality", "rate", "higher")
    fake = Indicator("fake", "product_quality", "rate", "lower", veto=True)
    M = 4
    n = np.array([[5000.0, 100.0]] * M)
    s = np.array([[5000.0, 0.0]] * M)  # perfect merchants
    veto = np.array([-np.inf, NOW - 10 * DAY, NOW - 179.9 * DAY, NOW - 180.1 * DAY])
    model = make_model([good, fake], M, veto_floor=0.3, veto_days=180.0)
    sc = score_state(model, make_stats(n, s, veto_time=veto), categories=None, guarantee=None, priors=None)
    assert sc.index[0] > 0.9 and sc.index[3] > 0.9
    assert sc.index[1] == 0.3 and sc.index[2] == 0.3
    np.testing.assert_array_equal(sc.vetoed, [False, True, True, False])
    g = np.ones((M, 3), dtype=bool)
    boosted = score_state(model, make_stats(n, s, veto_time=veto), categories=None, guarantee=g, priors=None)
    assert boosted.index[1] == 0.3  # guarantees do not lift a veto cap
    lower_floor = score_state(
        make_model([good, fake], M, veto_floor=0.0),
        make_stats(n, s, veto_time=veto),
        categories=None,
        guarantee=None,
        priors=None,
    )
    assert lower_floor.index[1] == 0.0
    first = sc.explain(1)[0]
    assert first.indicator == "veto" and first.value == veto[1] and first.impact == pytest.approx(sc.index[0] - 0.3)


def test_boost():
    model = make_model((Indicator("good", "product_quality", "rate", "higher"),), 3, guarantee_boost=0.1)
    stats = make_stats(np.ones((3, 1)), np.ones((3, 1)))
    kw = dict(categories=None, priors=None)
    np.testing.assert_array_equal(score_state(model, stats, guarantee=None, **kw).boost, [1, 1, 1])
    np.testing.assert_allclose(score_state(model, stats, guarantee=[True, False, True], **kw).boost, [1.1, 1, 1.1])
    g = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 1]])
    np.testing.assert_allclose(score_state(model, stats, guarantee=g, **kw).boost, [1.3, 1.0, 1.2])
    with pytest.raises(ValueError, match="guarantee"):
        score_state(model, stats, guarantee=[2, 0, 1], **kw)
    with pytest.raises(TypeError, match="guarantee"):
        score_state(model, stats, guarantee=[0.5, 0, 1], **kw)
    with pytest.raises(ValueError, match="guarantee"):
        score_state(model, stats, guarantee=[True, False], **kw)


def test_explain_lists_shortfalls_largest_first():
    rng = np.random.default_rng(11)
    inds = small_catalogue()
    M = 40
    n, s, s2, cats = random_problem(rng, M, inds, n_cat=2)
    model = make_model(inds, M, categories=cats, min_category_merchants=3)
    sc = score_state(model, make_stats(n, s, s2), categories=None, guarantee=None, priors=None)
    worst = int(np.argmin(sc.index))
    items = sc.explain(worst)
    assert items, "the worst merchant must have shortfalls"
    impacts = [it.impact for it in items]
    assert impacts == sorted(impacts, reverse=True) and min(impacts) > 0
    row = sc.category_rows[worst]
    est = sc.estimates[worst]
    for it in items:
        i = [ind.name for ind in inds].index(it.indicator)
        assert it.estimate == est[i] and it.norm_estimate == sc.norms[row, i]
        assert it.impact == pytest.approx(sc.weights[i] * (sc.norms[row, i] - est[i]))
        assert it.norm == sc.priors.mean[row, i]
        assert it.dimension == inds[i].dimension and it.kind == inds[i].kind
        if n[worst, i] > 0:
            assert it.value == pytest.approx(s[worst, i] / n[worst, i])  # in the indicator's units
        else:
            assert math.isnan(it.value)
    # every indicator below its category norm is listed, and only those
    below = {inds[i].name for i in range(len(inds)) if sc.weights[i] * (sc.norms[row, i] - est[i]) > 1e-12}
    assert {it.indicator for it in items} == below
    assert sc.explain(worst, top=2) == items[:2]
    # a merchant without any evidence sits at the norm: nothing to improve
    n0 = n.copy()
    s0, s20 = s.copy(), s2.copy()
    n0[0] = s0[0] = s20[0] = 0
    sc0 = score_state(model, make_stats(n0, s0, s20), categories=None, guarantee=None, priors=None)
    assert sc0.explain(0) == []


def test_explain_values_in_units():
    refund = Indicator("refund", "after_sales", "rate", "lower")
    stars = Indicator("stars", "product_experience", "rating", "higher")
    M = 8
    n = np.array([[100.0, 50.0]] * M)
    s = np.array([[5.0, 50 * 4.6]] * M)
    s[0] = [30.0, 50 * 3.1]  # refund rate 0.3, rating 3.1
    sc = score_state(
        make_model([refund, stars], M), make_stats(n, s, s * s / n), categories=None, guarantee=None, priors=None
    )
    items = {it.indicator: it for it in sc.explain(0)}
    assert items["refund"].value == pytest.approx(0.3) and items["stars"].value == pytest.approx(3.1)
    assert items["refund"].events == 100
    assert 0.05 < items["refund"].norm < 0.3 and 3.1 < items["stars"].norm < 4.6


def test_explain_bad_merchant():
    sc = score_state(
        make_model(small_catalogue(), 3),
        make_stats(np.zeros((3, 7)), np.zeros((3, 7))),
        categories=None,
        guarantee=None,
        priors=None,
    )
    with pytest.raises(ValueError, match="merchant"):
        sc.explain(3)
    with pytest.raises(ValueError, match="merchant"):
        sc.explain(-1)
    with pytest.raises(TypeError, match="merchant"):
        sc.explain(1.0)
    with pytest.raises(ValueError, match="top"):
        sc.explain(0, top=0)


def test_results_are_read_only_and_lazy_estimates_agree():
    rng = np.random.default_rng(2)
    inds = small_catalogue()
    n, s, s2, cats = random_problem(rng, 30, inds)
    model = make_model(inds, 30, categories=cats, min_category_merchants=3)
    sc = score_state(model, make_stats(n, s, s2), categories=None, guarantee=None, priors=None)
    rows = [sc.explain(m) for m in range(30)]  # before the matrix exists
    assert sc.estimates is sc.estimates
    assert [sc.explain(m) for m in range(30)] == rows
    for a in (sc.index, sc.dimensions, sc.estimates, sc.confidence, sc.boost, sc.priors.mean):
        with pytest.raises(ValueError):
            a[0] = 0.5


# ----------------------------------------------------------------------------- bad input


def _ok():
    inds = small_catalogue()
    rng = np.random.default_rng(4)
    n, s, s2, cats = random_problem(rng, 10, inds)
    return inds, n, s, s2, cats


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda n, s, s2, i: n.__setitem__((2, 0), np.nan), "n must be finite"),
        (lambda n, s, s2, i: n.__setitem__((2, 0), -1.0), "n must be finite"),
        (lambda n, s, s2, i: n.__setitem__((2, 0), np.inf), "n must be finite"),
        (lambda n, s, s2, i: s.__setitem__((2, 0), n[2, 0] + 1), r"outside \[0, n\]"),
        (lambda n, s, s2, i: s.__setitem__((2, 3), 0.5 * n[2, 3]), r"outside \[n, 5 n\]"),
        (lambda n, s, s2, i: s.__setitem__((2, 3), 6.0 * n[2, 3]), r"outside \[n, 5 n\]"),
        (lambda n, s, s2, i: s.__setitem__((2, 5), -1.0), r"outside \[0, inf\)"),
        (lambda n, s, s2, i: s.__setitem__((2, 5), np.inf), "s must be finite"),
        (lambda n, s, s2, i: (n.__setitem__((2, 6), 0.0), s.__setitem__((2, 6), 3.0)), "s must be 0 where n is 0"),
        (lambda n, s, s2, i: s2.__setitem__((2, 1), np.nan), "s2 must be finite"),
        (lambda n, s, s2, i: s2.__setitem__((2, 1), -2.0), "s2 must be finite"),
        (
            lambda n, s, s2, i: (n.__setitem__((2, 6), 0.0), s.__setitem__((2, 6), 0.0), s2.__setitem__((2, 6), 0.0)),
            None,
        ),  # no evidence: fine
    ],
)
def test_invalid_statistics_raise(mutate, match):
    inds, n, s, s2, cats = _ok()
    n[2] = np.maximum(n[2], 2.0)
    s[2] = [1.0, 1.0, 1.0, 2 * 3.0, 2 * 3.0, 5.0, 5.0][: len(inds)]
    s2[2] = s[2] ** 2 / n[2]
    mutate(n, s, s2, None)
    model = make_model(inds, 10, categories=cats, min_category_merchants=3)
    if match is None:
        score_state(model, make_stats(n, s, s2), categories=None, guarantee=None, priors=None)
        return
    with pytest.raises(ValueError, match=match):
        score_state(model, make_stats(n, s, s2), categories=None, guarantee=None, priors=None)


@pytest.mark.parametrize("what", ["negative", "zero_with_evidence", "s2_without_evidence"])
def test_invalid_event_counts_and_s2_raise(what):
    inds, n, s, s2, cats = _ok()
    events = np.ceil(n).astype(np.int64)
    if what == "negative":
        n[1, 0] = s[1, 0] = s2[1, 0] = 0.0
        events[1, 0] = -1
        match = r"stats.events: -1 at merchant 1, indicator 'good'"
    elif what == "zero_with_evidence":
        n[1, 0], s[1, 0], s2[1, 0] = 2.0, 1.0, 1.0
        events[1, 0] = 0
        match = "stats.events: 0 at merchant 1"
    else:
        n[1, 0] = s[1, 0] = 0.0
        s2[1, 0] = 1.0
        events[1, 0] = 0
        match = "stats.s2: 1.0 at merchant 1, indicator 'good'.*0 where n is 0"
    model = make_model(inds, 10, categories=cats, min_category_merchants=3)
    with pytest.raises(ValueError, match=match):
        score_state(model, make_stats(n, s, s2, events=events), categories=None, guarantee=None, priors=None)


def test_invalid_statistics_raise_with_frozen_priors_too():
    inds, n, s, s2, cats = _ok()
    model = make_model(inds, 10, categories=cats, min_category_merchants=3)
    sc = score_state(model, make_stats(n, s, s2), categories=None, guarantee=None, priors=None)
    n[4, 2] = np.nan
    with pytest.raises(ValueError, match="merchant 4, indicator 'fake'"):
        score_state(model, make_stats(n, s, s2), categories=None, guarantee=None, priors=sc.priors)


def test_bad_arguments():
    inds, n, s, s2, cats = _ok()
    model = make_model(inds, 10, categories=cats, min_category_merchants=3)
    stats = make_stats(n, s, s2)
    kw = dict(categories=None, guarantee=None, priors=None)
    with pytest.raises(ValueError, match=r"stats.n: expected shape \(11, 7\), got \(10, 7\)"):
        score_state(make_model(inds, 11), stats, **kw)
    with pytest.raises(TypeError, match="stats"):
        score_state(model, (n, s, s2), **kw)
    bad = TrustStats(now=NOW, n=n, s=s, s2=s2, events=np.zeros((10, 7), np.int64), veto_time=np.full(10, np.nan))
    with pytest.raises(ValueError, match="veto_time"):
        score_state(model, bad, **kw)
    bad = TrustStats(now=np.nan, n=n, s=s, s2=s2, events=np.zeros((10, 7), np.int64), veto_time=np.zeros(10))
    with pytest.raises(ValueError, match="stats.now"):
        score_state(model, bad, **kw)
    with pytest.raises(ValueError, match="categories"):
        score_state(model, stats, categories=np.zeros(9, dtype=int), guarantee=None, priors=None)
    with pytest.raises(TypeError, match="categories"):
        score_state(model, stats, categories=np.zeros(10), guarantee=None, priors=None)
    with pytest.raises(ValueError, match="prior_strength"):
        score_state(make_model(inds, 10, prior_strength=0.0), stats, **kw)
    with pytest.raises(ValueError, match="veto_floor"):
        score_state(make_model(inds, 10, veto_floor=1.5), stats, **kw)
    with pytest.raises(TypeError, match="cautious"):
        score_state(make_model(inds, 10, cautious=1), stats, **kw)
    with pytest.raises(ValueError, match="dimension_weights"):
        score_state(make_model(inds, 10, dimension_weights={"nope": 1.0}), stats, **kw)
    with pytest.raises(ValueError, match="dimension_weights"):
        score_state(make_model(inds, 10, dimension_weights={d: 0.0 for d in DIMENSIONS}), stats, **kw)
    with pytest.raises(TypeError, match="indicators"):
        score_state(SimpleNamespace(n_merchants=10), stats, **kw)


def test_bad_frozen_priors():
    inds, n, s, s2, cats = _ok()
    model = make_model(inds, 10, categories=cats, min_category_merchants=3)
    stats = make_stats(n, s, s2)
    sc = score_state(model, stats, categories=None, guarantee=None, priors=None)
    with pytest.raises(TypeError, match="priors"):
        score_state(model, stats, categories=None, guarantee=None, priors={"mean": 1})
    other = score_state(
        make_model(inds[:3], 10),
        make_stats(n[:, :3], s[:, :3], s2[:, :3]),
        categories=None,
        guarantee=None,
        priors=None,
    )
    with pytest.raises(ValueError, match="other indicators"):
        score_state(model, stats, categories=None, guarantee=None, priors=other.priors)
    with pytest.raises(ValueError, match="no frozen prior for category 99"):
        score_state(model, stats, categories=np.full(10, 99), guarantee=None, priors=sc.priors)
    p = sc.priors
    with pytest.raises(ValueError, match="strength"):
        TrustPriors(p.indicators, p.categories, p.mean, -p.strength, p.source)
    with pytest.raises(ValueError, match="sorted"):
        TrustPriors(p.indicators, p.categories[::-1], p.mean, p.strength, p.source)
    with pytest.raises(ValueError, match="shape"):
        TrustPriors(p.indicators, p.categories, p.mean[:, :2], p.strength, p.source)
    bad_mean = p.mean.copy()
    bad_mean[:, 0] = 1.5  # a rate prior outside [0, 1]
    with pytest.raises(ValueError, match="outside"):
        score_state(
            model,
            stats,
            categories=None,
            guarantee=None,
            priors=TrustPriors(p.indicators, p.categories, bad_mean, p.strength, p.source),
        )


# ----------------------------------------------------------------------------- the catalogue


def test_default_indicators_catalogue():
    cat = default_indicators()
    assert len(cat) >= 24
    assert len({ind.name for ind in cat}) == len(cat)
    assert {ind.dimension for ind in cat} == set(DIMENSIONS)
    assert all(ind.kind in KINDS and ind.direction in DIRECTIONS for ind in cat)
    assert all(ind.rationale and len(ind.rationale.splitlines()) == 1 for ind in cat)
    assert all(ind.kind == "rate" for ind in cat if ind.veto)
    assert any(ind.veto for ind in cat)
    kinds = Counter(ind.kind for ind in cat)
    assert kinds["rate"] and kinds["rating"] and kinds["magnitude"]
    for name in (
        "good_review_rate",
        "low_star_share",
        "quality_return_rate",
        "counterfeit_report",
        "refund_rate",
        "complaint_rate",
        "im_reply_3min_rate",
        "im_reply_minutes",
        "delivery_hours",
        "late_dispatch_rate",
        "seller_cancellation_rate",
        "host_false_advertising_vote",
        "host_attitude_rating",
        "item_as_described",
        "repurchase_rate",
        "refund_without_return_honoured",
        "after_sales_response_hours",
        "live_room_trust_vote",
    ):
        assert name in {ind.name for ind in cat}
    assert default_indicators() == cat and default_indicators() is not cat
    assert ecomcore.default_indicators is default_indicators
    assert ecomcore.TrustScores is TrustScores


def test_default_catalogue_scores():
    cat = default_indicators()
    rng = np.random.default_rng(8)
    M = 50
    n, s, s2, cats = random_problem(rng, M, cat, n_cat=2, p_empty=0.5)
    model = make_model(cat, M, categories=cats, min_category_merchants=5)
    stats = make_stats(n, s, s2)
    sc = score_state(model, stats, categories=None, guarantee=None, priors=None)
    assert_matches_reference(sc, ref_score(model, stats, cats), cat)
    assert not np.isnan(sc.dimensions).any()


# ----------------------------------------------------------------------------- through TrustModel


def _events_for(indicator_name, merchants, values, times, buyers=None):
    ev = {
        "merchant": np.asarray(merchants, dtype=np.int64),
        "indicator": np.array([indicator_name] * len(merchants)),
        "value": np.asarray(values, dtype=np.float64),
        "time": np.asarray(times, dtype=np.float64),
    }
    if buyers is not None:
        ev["buyer"] = np.asarray(buyers, dtype=np.int64)
    return ev


def _concat(*evs):
    return {k: np.concatenate([e[k] for e in evs]) for k in ("merchant", "indicator", "value", "time")}


def test_trust_model_delegates_to_score_state():
    cat = default_indicators()
    rng = np.random.default_rng(12)
    M, E = 40, 4000
    names = np.array([ind.name for ind in cat])
    kinds = np.array([ind.kind for ind in cat])
    ind = rng.integers(0, len(cat), E)
    value = np.where(
        kinds[ind] == "rate",
        rng.random(E) < 0.3,
        np.where(kinds[ind] == "rating", rng.integers(1, 6, E), rng.gamma(2, 10, E)),
    ).astype(float)
    ev = {
        "merchant": rng.integers(0, M, E),
        "indicator": names[ind],
        "value": value,
        "time": NOW - rng.uniform(0, 300, E) * DAY,
    }
    cats = rng.integers(0, 3, M)
    tm = ecomcore.TrustModel(cat, n_merchants=M, categories=cats)
    state = tm.fold(ev)
    sc = tm.score(state, NOW, guarantee=np.eye(M, 3, dtype=bool))
    stats = state.stats(NOW)
    direct = score_state(tm, stats, categories=cats, guarantee=None, priors=None)
    np.testing.assert_array_equal(sc.index, direct.index)
    np.testing.assert_array_equal(sc.estimates, direct.estimates)
    np.testing.assert_allclose(sc.boost[:4], [1.05, 1.05, 1.05, 1.0])
    assert_matches_reference(sc, ref_score(tm, stats, cats), cat)
    frozen = tm.score(state, NOW + 30 * DAY, priors=sc.priors)
    assert frozen.priors is sc.priors


@pytest.mark.parametrize("half_lives", [500, 1070, 1100, 1500, 5000])
def test_trust_model_scores_evidence_decayed_for_thousands_of_half_lives_as_the_prior(half_lives):
    """One rating and one magnitude, scored ~3 years later at a 1-day half-life: no error, and
    once the weight is below the smallest normal double the merchant scores like one without
    evidence (regression: subnormal n overflowed 1 / n in the moments kernel, and n underflowed
    to 0 while a large magnitude's s did not)."""
    cat = default_indicators()
    tm = ecomcore.TrustModel(cat, n_merchants=3, half_life_days=1.0)
    state = tm.fold(
        _concat(_events_for("review_rating", [0], [5.0], [NOW]), _events_for("delivery_hours", [0], [1e40], [NOW]))
    )
    now = NOW + half_lives * DAY
    fitted = tm.score(state, now)  # fitted priors
    np.testing.assert_array_equal(fitted.estimates[0], fitted.estimates[1])
    assert fitted.index[0] == fitted.index[1]
    assert 0.0 <= fitted.confidence[0] < 1e-100
    empty = tm.score(tm.new_state(), now)
    frozen = tm.score(state, now, priors=empty.priors)
    mag = np.array([ind.kind == "magnitude" for ind in cat])
    rating = [ind.name for ind in cat].index("review_rating")
    # the rating's shrunk mean is the prior's to double precision
    assert frozen.estimates[0, rating] == empty.estimates[0, rating]
    np.testing.assert_array_equal(frozen.estimates[:, ~mag], empty.estimates[:, ~mag])
    if 2.0**-half_lives < np.finfo(np.float64).tiny:  # the weight is gone: exactly no evidence
        np.testing.assert_array_equal(frozen.estimates, empty.estimates)
        np.testing.assert_array_equal(frozen.index, empty.index)
        np.testing.assert_array_equal(fitted.index, empty.index)
        assert frozen.confidence[0] == 0.0 and frozen.explain(0) == empty.explain(0)
    else:  # 2**-500 is evidence still: percentiles rank the tiny magnitude s = 1e40 * 2**-500
        hours = [ind.name for ind in cat].index("delivery_hours")
        assert (frozen.estimates[:, hours] != empty.estimates[:, hours]).any()


def test_subnormal_evidence_scores_as_none_and_kernels_agree_on_invalid_cells():
    """n below the smallest normal double (stats built by hand, not by TrustState) is no evidence
    to the moments kernel; invalid cells there are still found and named."""
    inds = small_catalogue()
    n_i = len(inds)
    n = np.zeros((4, n_i))
    n[1] = [2.0, 1.0, 1.0, 3.0, 2.0, 2.0, 1.0]
    s = n * [0.5, 0.0, 0.0, 4.0, 2.0, 10.0, 3.0]
    s2 = np.where([ind.kind == "rate" for ind in inds], s, s * [1, 1, 1, 4.0, 2.0, 10.0, 3.0])
    sub = 5e-324 * np.array([4.0, 2.0, 2.0, 10.0, 4.0, 8.0, 2.0])
    n[0] = sub
    s[0] = sub * [0.5, 0.0, 0.0, 3.0, 2.0, 4.0, 1.0]
    s2[0] = np.where([ind.kind == "rate" for ind in inds], s[0], 0.0)
    events = np.ceil(n).astype(np.int64)
    model = make_model(inds, 4, min_category_merchants=1)
    kw = dict(categories=None, guarantee=None, priors=None)
    sc = score_state(model, make_stats(n, s, s2, events=events), **kw)
    none = n.copy(), s.copy(), s2.copy()
    for arr in none:
        arr[0] = 0.0
    ref = score_state(model, make_stats(*none, events=events), **kw)
    np.testing.assert_array_equal(sc.priors.mean, ref.priors.mean)
    np.testing.assert_array_equal(sc.priors.strength, ref.priors.strength)
    np.testing.assert_allclose(sc.estimates[0], sc.estimates[2], rtol=0, atol=1e-15)
    assert sc.confidence[0] < 1e-300
    for what, match in (
        ("s2", "stats.s2: -1.0 at merchant 0, indicator 'good'"),
        ("events", "stats.events: 0 at merchant 0"),
    ):
        bad_s2, bad_ev = s2.copy(), events.copy()
        if what == "s2":
            bad_s2[0, 0] = -1.0
        else:
            bad_ev[0, 0] = 0
        with pytest.raises(ValueError, match=match):
            score_state(model, make_stats(n, s, bad_s2, events=bad_ev), **kw)


def test_trust_model_three_perfect_reviews_below_three_thousand():
    rng = np.random.default_rng(0)
    tm = ecomcore.TrustModel(default_indicators(), n_merchants=32)
    t = NOW - rng.uniform(0, 60, 3003) * DAY
    parts = [
        _events_for("review_rating", [0] * 3, [5.0] * 3, t[:3]),
        _events_for("review_rating", [1] * 3000, [5.0] * 2400 + [4.0] * 600, t[3:]),
    ]
    for m in range(2, 32):  # the rest of the market: typical shops
        k = int(rng.integers(20, 200))
        v = np.clip(np.round(rng.normal(rng.uniform(3.6, 4.7), 0.9, k)), 1, 5)
        parts.append(_events_for("review_rating", [m] * k, v, NOW - rng.uniform(0, 60, k) * DAY))
    sc = tm.score(tm.fold(_concat(*parts)), NOW)
    assert sc.index[0] < sc.index[1]


def test_trust_model_monotone_with_frozen_priors_and_veto():
    rng = np.random.default_rng(1)
    cat = default_indicators()
    M = 20
    tm = ecomcore.TrustModel(cat, n_merchants=M)

    def some(name, values):
        return _events_for(name, rng.integers(0, M, 600), values, NOW - rng.uniform(0, 90, 600) * DAY)

    base = _concat(
        some("refund_rate", rng.random(600) < 0.2),
        some("review_rating", rng.integers(1, 6, 600)),
        some("delivery_hours", rng.gamma(2, 24, 600)),
    )
    state = tm.fold(base)
    before = tm.score(state, NOW)
    for name, good, bad in (("refund_rate", 0.0, 1.0), ("review_rating", 5.0, 1.0), ("delivery_hours", 0.0, 1e4)):
        for value, sign in ((good, 1), (bad, -1)):
            after = tm.score(tm.fold(_events_for(name, [3], [value], [NOW - DAY]), state), NOW, priors=before.priors)
            assert sign * (after.index[3] - before.index[3]) >= -1e-12, (name, value)
    vetoed = tm.score(tm.fold(_events_for("counterfeit_report", [5], [1.0], [NOW - 3 * DAY]), state), NOW)
    assert vetoed.vetoed[5] and vetoed.index[5] <= tm.veto_floor and vetoed.explain(5)[0].indicator == "veto"
    assert not vetoed.vetoed[np.arange(M) != 5].any()


def test_many_merchants_blocks_and_threads(monkeypatch):
    """Above one moment block (32,768 merchants): any thread count gives the same bits, and the
    block sums agree with one serial pass."""
    import ecomcore.trust_scoring as ts

    rng = np.random.default_rng(21)
    inds = small_catalogue()
    M = 70_000
    k = rng.poisson(3.0, (M, len(inds))).astype(float)
    d = rng.uniform(0.3, 1.0, (M, len(inds)))
    n = k * d
    kinds = np.array([ind.kind for ind in inds])
    mean = np.where(kinds == "rate", rng.beta(2, 5, (M, len(inds))), rng.uniform(1, 5, (M, len(inds))))
    mean = np.where(kinds == "magnitude", rng.gamma(2, 10, (M, len(inds))), mean)
    s = n * mean
    s2 = np.where(kinds == "rate", s, n * mean * mean * 1.1)
    s2 = np.where(kinds == "rating", np.minimum(s2, 25 * n), s2)
    stats = make_stats(n, s, s2, events=k.astype(np.int64))
    cats = rng.integers(0, 7, M)
    kw = dict(categories=None, guarantee=None, priors=None)
    one = score_state(make_model(inds, M, categories=cats, n_threads=1), stats, **kw)
    two = score_state(make_model(inds, M, categories=cats, n_threads=2), stats, **kw)
    np.testing.assert_array_equal(one.priors.strength, two.priors.strength)
    np.testing.assert_array_equal(one.index, two.index)
    np.testing.assert_array_equal(one.estimates, two.estimates)
    assert (one.priors.source == 1).any()
    monkeypatch.setattr(ts, "_MOMENT_BLOCKS", 1)
    serial = score_state(make_model(inds, M, categories=cats, n_threads=2), stats, **kw)
    np.testing.assert_allclose(serial.priors.strength, one.priors.strength, rtol=1e-9)
    np.testing.assert_allclose(serial.index, one.index, rtol=1e-9)
