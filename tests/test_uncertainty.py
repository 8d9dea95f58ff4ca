"""Bootstrap intervals (analysis/uncertainty.py): coverage on simulated units whose true value
is known, the resampling unit (records, not tokens), formatting and bad input."""

import math

import numpy as np
import pytest

import interp_widgets as iw
from interp_widgets.analysis.uncertainty import resample_weights


def _unit(rng, n_records=40, n_tokens=16, slope=0.8):
    """A unit's true and simulated activations [record][pos]: a per-record level plus token
    noise (tokens of one record are correlated), the simulation a noisy linear read-out."""
    t = rng.normal(0, 1.0, (n_records, 1)) + rng.normal(0, 1.0, (n_records, n_tokens))
    p = slope * t + rng.normal(0, 1.0, (n_records, n_tokens))
    return t, p


# population correlation of t and p above: var t = 2, cov = 0.8 * 2, var p = 0.64 * 2 + 1
TRUE_R = 0.8 * 2 / math.sqrt(2 * (0.64 * 2 + 1))


def test_correlation_interval_covers_the_truth_95_percent_of_the_time():
    rng = np.random.default_rng(2026)
    hits = 0
    for run in range(1000):
        t, p = _unit(rng)
        est = iw.bootstrap_correlation(list(t), list(p), n_boot=1000, seed=run)
        assert est.n == 40 and est.level == 0.95
        hits += est.contains(TRUE_R)
    assert 0.93 <= hits / 1000 <= 0.97, hits


def test_mean_interval_covers_a_skewed_mean():
    rng = np.random.default_rng(7)
    hits = sum(iw.bootstrap_mean(rng.exponential(1.0, 30), n_boot=1000, seed=i).contains(1.0)
               for i in range(1000))
    assert 0.93 <= hits / 1000 <= 0.97, hits


def test_records_not_tokens_are_resampled():
    """With correlated tokens, an interval from resampling tokens would be too narrow; ours,
    from records, is as wide as the spread of the estimate over repeated units."""
    rng = np.random.default_rng(0)
    estimates = [iw.bootstrap_correlation(*map(list, _unit(rng)), n_boot=500, seed=i)
                 for i in range(200)]
    spread = np.std([e.value for e in estimates])
    mean_half_width = np.mean([e.width for e in estimates]) / 2
    # a 95% interval's half width is about 1.96 standard deviations of the estimate
    assert 1.6 * spread < mean_half_width < 2.4 * spread
    t, p = _unit(np.random.default_rng(1))
    pooled = np.corrcoef(t.ravel(), p.ravel())[0, 1]
    assert iw.bootstrap_correlation(list(t), list(p)).value == pytest.approx(pooled, abs=1e-12)


def test_mean_over_prompts_per_component_and_nan_rows():
    rng = np.random.default_rng(3)
    values = rng.normal([1.0, -2.0, 0.0], 0.5, (50, 3))
    values[4, 1] = np.nan  # a prompt where one component is undefined
    est = iw.bootstrap_mean(values, seed=1)
    assert len(est) == 3
    assert est[0].value == pytest.approx(values[:, 0].mean())
    assert est[1].value == pytest.approx(np.nanmean(values[:, 1]))
    for e, truth in zip(est, (1.0, -2.0, 0.0)):
        assert e.low < e.value < e.high and abs(e.value - truth) < 0.3


def test_seeded_and_method_choice():
    x = np.random.default_rng(5).normal(size=25)
    a = iw.bootstrap_mean(x, seed=3)
    assert a == iw.bootstrap_mean(x, seed=3)
    assert a != iw.bootstrap_mean(x, seed=4)
    pct = iw.bootstrap_mean(x, seed=3, method="percentile")
    assert pct.method == "percentile" and pct.low < pct.value < pct.high


def test_bootstrap_statistic_for_unweighted_statistics():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(40), np.zeros(40)]
    scores = labels + rng.normal(0, 1.0, 80)
    est = iw.bootstrap_statistic(lambda i: roc_auc_score(labels[i], scores[i]), 80, seed=0)
    assert est.value == pytest.approx(roc_auc_score(labels, scores))
    assert 0.5 < est.low < est.value < est.high <= 1.0
    bca = iw.bootstrap_statistic(lambda i: roc_auc_score(labels[i], scores[i]), 80,
                                 method="bca", n_boot=300, seed=0)
    assert bca.low < bca.value < bca.high


def test_formatting_and_dicts():
    e = iw.Estimate(0.9012, 0.8712, 0.9234, 40)
    assert str(e) == "0.90 [0.87, 0.92]"
    assert format(e, ".3f") == "0.901 [0.871, 0.923]"
    assert float(e) == 0.9012
    assert iw.Estimate.from_dict(e.to_dict()) == e
    none = iw.Estimate(0.5, math.nan, math.nan, 1)
    assert str(none) == "0.50 [no interval, n=1]"
    assert none.to_dict()["low"] is None
    frame = iw.estimates_frame([e, none], index=["a", "b"], name="score")
    assert list(frame.columns) == ["score", "score_low", "score_high", "n", "score_ci"]
    assert frame.loc["a", "score_ci"] == "0.90 [0.87, 0.92]"


def test_degenerate_inputs_give_no_interval_not_an_error():
    assert math.isnan(iw.bootstrap_mean([3.0]).low)
    assert str(iw.bootstrap_mean([2.0, 2.0, 2.0])) == "2.00 [no interval, n=3]"
    flat = iw.bootstrap_correlation([[0.0, 0.0], [0.0, 0.0]], [[1.0, 2.0], [3.0, 4.0]])
    assert math.isnan(flat.value) and math.isnan(flat.low)


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="non-empty"):
        iw.bootstrap_mean([])
    with pytest.raises(ValueError, match="level must be in"):
        iw.bootstrap_mean([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="method must be one of"):
        iw.bootstrap_mean([1.0, 2.0], method="student")
    with pytest.raises(ValueError, match="n_boot"):
        iw.bootstrap_mean([1.0, 2.0], n_boot=10)
    with pytest.raises(ValueError, match="Record 1: 2 true activations but 3 predicted"):
        iw.bootstrap_correlation([[1.0], [1.0, 2.0]], [[1.0], [1.0, 2.0, 3.0]])


def test_resample_weights_are_counts_summing_to_n():
    w = resample_weights(7, 300, np.random.default_rng(0))
    assert w.shape == (300, 7) and np.all(w.sum(1) == 7) and np.all(w >= 0)


def test_stratified_resamples_keep_each_stratum_size():
    strata = np.array([1, 1, 1, 0, 0])
    w = resample_weights(5, 200, np.random.default_rng(0), strata)
    assert np.all(w[:, :3].sum(1) == 3) and np.all(w[:, 3:].sum(1) == 2)
    with pytest.raises(ValueError, match="strata must have one entry per unit"):
        iw.analysis.uncertainty.bootstrap(lambda w: w.mean(1), 5, strata=[0, 1])
