"""Predictions: observed rows, new data, new groups, posterior predictive, LOO.

Shape and error tests reuse short fits; the comparisons with brms's new-subject quantiles
(``/work/shared/reference/REFERENCE_RESULTS.md``) are marked slow and use 4 x 1000 draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmixed as bm
from bayesmixed.errors import FitError, PredictionError
from bayesmixed.predict import Prediction
from bayesmixed.summary import coef_draws


@pytest.fixture(scope="module")
def new_subject():
    return pd.DataFrame({"Days": range(10), "Subject": "new"})


@pytest.fixture(scope="module")
def fixed_fit(sleepstudy):
    """Fixed effects only: no group terms."""
    return bm.Model("Reaction ~ Days", sleepstudy).fit(
        draws=200, tune=300, chains=2, random_seed=3
    )


@pytest.fixture(scope="module")
def factor_data(sleepstudy):
    return sleepstudy.assign(phase=np.where(sleepstudy["Days"] < 5, "early", "late"))


@pytest.fixture(scope="module")
def factor_fit(factor_data):
    """A categorical fixed effect next to a group intercept (very short run)."""
    return bm.Model("Reaction ~ Days + phase + (1 | Subject)", factor_data).fit(
        draws=50, tune=100, chains=1, random_seed=5
    )


@pytest.fixture(scope="module")
def cbpp_fit():
    return bm.Model(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.cbpp()
    ).fit(draws=100, tune=200, chains=1, random_seed=7)


# -- observed rows --------------------------------------------------------------------------


def test_observed_rows_track_the_data(sleep_fit, sleepstudy):
    pred = sleep_fit.predict()
    assert isinstance(pred, Prediction)
    assert pred.draws.dims == ("chain", "draw", "row")
    assert dict(pred.draws.sizes) == {"chain": 2, "draw": 200, "row": 180}
    mean = pred.summary()["mean"].to_numpy()
    assert np.corrcoef(mean, sleepstudy["Reaction"])[0, 1] > 0.9


def test_new_data_path_matches_observed_path(sleep_fit, sleepstudy):
    """The fitted rows passed as new data give the observed-row linear predictor exactly."""
    observed = sleep_fit.predict(kind="linear").draws.values
    as_new = sleep_fit.predict(sleepstudy, kind="linear").draws.values
    np.testing.assert_allclose(as_new, observed, rtol=1e-10)


def test_population_level_is_fixed_linear_predictor(sleep_fit, new_subject):
    pred = sleep_fit.predict(new_subject, include_groups=False)
    post = sleep_fit.posterior
    expected = (
        post["Intercept"].values[..., None]
        + post["Days"].values[..., None] * new_subject["Days"].to_numpy()
    )
    np.testing.assert_allclose(pred.draws.values, expected, rtol=1e-10)
    # grouping columns are not needed without group effects
    pred = sleep_fit.predict(new_subject[["Days"]], include_groups=False)
    assert pred.draws.sizes["row"] == 10


def test_mean_and_linear_agree_for_identity_link(sleep_fit, new_subject):
    kw = {"new_groups": "gaussian", "random_seed": 4}
    mean = sleep_fit.predict(new_subject, kind="mean", **kw).draws
    linear = sleep_fit.predict(new_subject, kind="linear", **kw).draws
    np.testing.assert_allclose(mean.values, linear.values)


def test_summary_layout(sleep_fit, new_subject):
    data = new_subject.set_index(pd.Index(range(100, 110)))
    pred = sleep_fit.predict(data, kind="response", new_groups="gaussian", random_seed=1)
    table = pred.summary()
    assert list(table.columns) == ["mean", "sd", "q2.5", "q50", "q97.5"]
    assert list(table.index) == list(range(100, 110))
    assert (table["q2.5"] < table["q50"]).all() and (table["q50"] < table["q97.5"]).all()
    assert list(pred.summary(quantiles=(0.05, 0.95)).columns) == ["mean", "sd", "q5", "q95"]
    with pytest.raises(PredictionError, match="quantiles"):
        pred.summary(quantiles=(0.5, 1.5))
    assert "kind='response'" in repr(pred)


def test_random_seed_reproducible(sleep_fit, new_subject):
    kw = {"kind": "response", "new_groups": "gaussian"}
    a = sleep_fit.predict(new_subject, random_seed=9, **kw).draws.values
    b = sleep_fit.predict(new_subject, random_seed=9, **kw).draws.values
    c = sleep_fit.predict(new_subject, random_seed=10, **kw).draws.values
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# -- new groups -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gaussian", "uncertainty"])
def test_each_new_level_gets_its_own_draws(sleep_fit, method):
    data = pd.DataFrame({"Days": [0, 0, 0], "Subject": ["a", "b", "a"]})
    draws = sleep_fit.predict(data, kind="linear", new_groups=method, random_seed=2).draws
    a, b, a_again = (draws.values[..., i] for i in range(3))
    np.testing.assert_array_equal(a, a_again)  # one level, one set of effects
    assert not np.allclose(a, b)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.5


def test_old_levels_reuses_one_existing_level(sleep_fit):
    data = pd.DataFrame({"Days": [0, 5], "Subject": "new"})
    pred = sleep_fit.predict(data, kind="linear", new_groups="old_levels", random_seed=3)
    coef = coef_draws(sleep_fit.posterior, sleep_fit.design, "Subject")
    lines = coef[..., 0][..., None] + coef[..., 1][..., None] * np.array([0.0, 5.0])
    matches = [
        np.allclose(pred.draws.values, lines[:, :, j, :]) for j in range(coef.shape[2])
    ]
    assert sum(matches) == 1


def test_known_and_new_levels_mix(sleep_fit, sleepstudy):
    data = pd.DataFrame({"Days": [3, 3], "Subject": [308, "new"]})
    pred = sleep_fit.predict(data, kind="linear", new_groups="gaussian", random_seed=1)
    observed = sleep_fit.predict(kind="linear").draws
    row = np.flatnonzero((sleepstudy["Subject"] == "308") & (sleepstudy["Days"] == 3))[0]
    np.testing.assert_allclose(pred.draws.values[..., 0], observed.values[..., row])


def test_unseen_level_raises_by_default(sleep_fit, new_subject):
    with pytest.raises(PredictionError, match=r"'new'.*'Subject'.*new_groups='gaussian'"):
        sleep_fit.predict(new_subject)


def test_new_group_effects(sleep_fit):
    eff = sleep_fit.new_group_effects("Subject", n=2, random_seed=1)
    assert eff.dims == ("chain", "draw", "level", "term")
    assert list(eff.coords["level"].values) == ["new_1", "new_2"]
    ranef_terms = list(sleep_fit.ranef()["Subject"].columns.get_level_values("term").unique())
    assert list(eff.coords["term"].values) == ranef_terms == ["Intercept", "Days"]
    fixef = sleep_fit.fixef()["mean"]
    sd = sleep_fit.summary()["mean"]
    means = eff.mean(("chain", "draw", "level"))
    assert abs(means.sel(term="Intercept") - fixef["Intercept"]) < 0.5 * sd["sd(Intercept|Subject)"]
    assert abs(means.sel(term="Days") - fixef["Days"]) < 0.5 * sd["sd(Days|Subject)"]
    spread = eff.std(("chain", "draw")).sel(level="new_1", term="Days")
    assert 0.7 * sd["sd(Days|Subject)"] < spread < 1.6 * sd["sd(Days|Subject)"]
    assert not np.allclose(eff.sel(level="new_1"), eff.sel(level="new_2"))
    deviations = sleep_fit.new_group_effects("Subject", 2, include_fixed=False, random_seed=1)
    np.testing.assert_allclose(
        eff.sel(level="new_1", term="Days") - deviations.sel(level="new_1", term="Days"),
        sleep_fit.posterior["Days"],
    )
    with pytest.raises(PredictionError, match="no grouping factor 'Herd'"):
        sleep_fit.new_group_effects("Herd")
    with pytest.raises(PredictionError, match="positive integer"):
        sleep_fit.new_group_effects("Subject", n=0)


# -- validation -----------------------------------------------------------------------------


def test_missing_column_raises(sleep_fit, new_subject):
    with pytest.raises(PredictionError, match="'Days'"):
        sleep_fit.predict(new_subject.rename(columns={"Days": "days"}), new_groups="gaussian")
    with pytest.raises(PredictionError, match=r"'Subject'.*include_groups=False"):
        sleep_fit.predict(new_subject[["Days"]])


def test_missing_values_raise(sleep_fit):
    data = pd.DataFrame({"Days": [1.0, np.nan], "Subject": [308, 308]})
    with pytest.raises(PredictionError, match=r"Missing values.*'Days'"):
        sleep_fit.predict(data)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"kind": "expected"}, "kind must be one of"),
        ({"new_groups": "sample"}, "new_groups must be one of"),
        ({"random_seed": -1}, "random_seed"),
        ({"include_groups": "no"}, "include_groups"),
    ],
)
def test_invalid_options(sleep_fit, options, match):
    with pytest.raises(PredictionError, match=match):
        sleep_fit.predict(**options)


def test_not_a_dataframe(sleep_fit):
    with pytest.raises(PredictionError, match="DataFrame"):
        sleep_fit.predict({"Days": [1], "Subject": ["308"]})


def test_unseen_category_of_fixed_factor(factor_fit):
    data = pd.DataFrame({"Days": [1, 2], "phase": ["early", "recovery"], "Subject": [308, 308]})
    with pytest.raises(PredictionError, match=r"'phase'.*'recovery'"):
        factor_fit.predict(data)
    ok = factor_fit.predict(data.assign(phase=["early", "late"]), kind="response", random_seed=1)
    assert ok.draws.sizes["row"] == 2


def test_fixed_only_model(fixed_fit, new_subject, sleepstudy):
    assert "sd(" not in " ".join(fixed_fit.summary().index)
    pred = fixed_fit.predict(new_subject[["Days"]], kind="response", random_seed=1)
    assert pred.draws.sizes["row"] == 10
    table = fixed_fit.predict().summary()
    assert np.corrcoef(table["mean"], sleepstudy["Days"])[0, 1] > 0.99
    with pytest.raises(PredictionError, match="no grouping factor"):
        fixed_fit.new_group_effects("Subject")


# -- binomial trials ------------------------------------------------------------------------


def test_binomial_response_needs_trials(cbpp_fit):
    new = pd.DataFrame({"period": ["1", "4"], "herd": "new", "size": [20, 20], "incidence": 0})
    pred = cbpp_fit.predict(new, kind="response", new_groups="gaussian", random_seed=1)
    values = pred.draws.values
    assert values.min() >= 0 and values.max() <= 20
    assert np.all(values == np.round(values))
    prob = cbpp_fit.predict(new[["period", "herd"]], kind="mean", new_groups="gaussian")
    assert 0 < prob.draws.values.min() and prob.draws.values.max() < 1
    assert prob.summary().loc[0, "mean"] > prob.summary().loc[1, "mean"]  # period 4 lower
    with pytest.raises(PredictionError, match="'size'"):
        cbpp_fit.predict(new.drop(columns="size"), kind="response", new_groups="gaussian")


def test_binomial_posterior_predictive_and_loo(cbpp_fit):
    tree = cbpp_fit.posterior_predictive(random_seed=1)
    name = cbpp_fit.design.response_name
    ppc = tree["posterior_predictive"][name]
    observed = tree["observed_data"][name]
    assert ppc.sizes["__obs__"] == observed.sizes["__obs__"]
    trials = bm.datasets.cbpp()["size"].to_numpy()
    assert np.all(ppc.values <= trials)
    assert np.isfinite(float(cbpp_fit.loo().elpd))


# -- ArviZ groups, LOO ----------------------------------------------------------------------


def test_posterior_predictive_group(sleep_fit):
    before = set(sleep_fit.idata.children)
    tree = sleep_fit.posterior_predictive(random_seed=1)
    assert set(sleep_fit.idata.children) == before  # a copy, the fit is untouched
    ppc = tree["posterior_predictive"]["Reaction"]
    assert ppc.dims == ("chain", "draw", "__obs__")
    assert ppc.sizes["__obs__"] == tree["observed_data"]["Reaction"].sizes["__obs__"]
    assert abs(float(ppc.mean()) - float(tree["observed_data"]["Reaction"].mean())) < 10


def test_ppc_plot_runs(sleep_fit):
    azp = pytest.importorskip("arviz_plots")
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    pc = azp.plot_ppc_dist(sleep_fit.posterior_predictive(random_seed=1), backend="matplotlib")
    assert pc is not None


def test_log_likelihood_matches_normal_density(sleep_fit, sleepstudy):
    from scipy import stats

    tree = sleep_fit.log_likelihood()
    ll = tree["log_likelihood"]["Reaction"]
    assert ll.dims == ("chain", "draw", "__obs__")
    mu = sleep_fit.predict(kind="mean").draws.values
    sigma = sleep_fit.posterior["sigma"].values[..., None]
    expected = stats.norm.logpdf(sleepstudy["Reaction"].to_numpy(), mu, sigma)
    np.testing.assert_allclose(ll.values, expected, rtol=1e-8)


def test_loo_prefers_mixed_model(sleep_fit, fixed_fit):
    mixed, fixed = sleep_fit.loo(), fixed_fit.loo()
    assert mixed.elpd > fixed.elpd
    table = bm.compare({"fixed": fixed_fit, "mixed": sleep_fit})
    assert table.index[0] == "mixed"
    assert -table.loc["fixed", "elpd_diff"] > 2 * table.loc["fixed", "dse"]


def test_compare_refuses_bad_input(sleep_fit, cbpp_fit):
    with pytest.raises(FitError, match="two or more"):
        bm.compare({"mixed": sleep_fit})
    with pytest.raises(FitError, match="not a fit"):
        bm.compare({"mixed": sleep_fit, "other": "fit"})
    with pytest.raises(FitError, match="different observations"):
        bm.compare({"mixed": sleep_fit, "cbpp": cbpp_fit})


def test_nothing_changed_in_place(sleep_fit, new_subject):
    posterior = sleep_fit.idata["posterior"].to_dataset().copy(deep=True)
    children = set(sleep_fit.idata.children)
    data = new_subject.copy(deep=True)
    sleep_fit.predict(new_subject, kind="response", new_groups="gaussian", random_seed=1)
    sleep_fit.predict(new_subject, kind="mean", new_groups="uncertainty", random_seed=1)
    sleep_fit.predict(new_subject, new_groups="old_levels", random_seed=1)
    sleep_fit.new_group_effects("Subject", random_seed=1)
    sleep_fit.posterior_predictive(random_seed=1)
    sleep_fit.log_likelihood()
    xr.testing.assert_identical(sleep_fit.idata["posterior"].to_dataset(), posterior)
    assert set(sleep_fit.idata.children) == children
    pd.testing.assert_frame_equal(new_subject, data)


# -- agreement with brms (REFERENCE_RESULTS.md) ---------------------------------------------

# brms 2.18, 4 x 1000 draws: 2.5% / 50% / 97.5% quantiles on days 0, 4 and 9
BRMS_NEW_SUBJECT = {
    ("response", "gaussian", True): [(172, 250, 326), (195, 293, 393), (190, 346, 498)],
    ("response", "uncertainty", True): [(180, 253, 318), (202, 296, 377), (209, 348, 471)],
    ("mean", "gaussian", True): [(191, 251, 310), (207, 293, 378), (203, 346, 491)],
    ("mean", "gaussian", False): [(237, 251, 266), (274, 293, 311), (314, 345, 378)],
}


@pytest.fixture(scope="module")
def long_fit(sleepstudy):
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    return model.fit(draws=1000, tune=1000, chains=4, random_seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BRMS_NEW_SUBJECT), ids=lambda c: "-".join(map(str, c)))
def test_new_subject_agrees_with_brms(long_fit, new_subject, case):
    kind, method, include_groups = case
    pred = long_fit.predict(
        new_subject, kind=kind, new_groups=method, include_groups=include_groups, random_seed=1
    )
    table = pred.summary().loc[[0, 4, 9], ["q2.5", "q50", "q97.5"]]
    expected = np.array(BRMS_NEW_SUBJECT[case], dtype=float)
    np.testing.assert_allclose(table.to_numpy(), expected, rtol=0.10)
