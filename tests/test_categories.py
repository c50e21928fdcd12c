"""Ordinal (cumulative, sratio) and categorical responses: names, shapes, errors, numbers."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import bayesmixed as bm
from bayesmixed.categories import probabilities

FORMULA = "rating ~ treat + period + carry + (1 | subject)"
SHORT = {"draws": 150, "tune": 200, "chains": 2, "random_seed": 3}


@pytest.fixture(scope="module")
def inhaler():
    return bm.datasets.inhaler()


@pytest.fixture(scope="module")
def small(inhaler):
    """Every other subject (143 subjects, all four ratings): fits in seconds."""
    keep = inhaler["subject"].astype(int) % 2 == 0
    return inhaler.loc[keep].reset_index(drop=True)


def _fit(data, family, link=None, formula=FORMULA):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.errors.ConvergenceWarning)
        return bm.Model(formula, data, family=family, link=link).fit(**SHORT)


@pytest.fixture(scope="module")
def cumulative_fit(small):
    return _fit(small, "cumulative")


# -- probabilities (NumPy and PyTensor share one function) -----------------------------------


def test_cumulative_probabilities_match_the_definition():
    eta = np.array([-0.3, 0.0, 1.2])
    tau = np.array([-1.0, 0.5, 2.0])
    p = probabilities(np, "cumulative", "logit", eta, tau)
    cdf = special.expit(tau[None, :] - eta[:, None])
    expected = np.diff(np.column_stack([np.zeros(3), cdf, np.ones(3)]), axis=1)
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    probit = probabilities(np, "cumulative", "probit", eta, tau)
    np.testing.assert_allclose(probit[:, 0], stats.norm.cdf(tau[0] - eta), rtol=1e-12)


def test_sratio_and_categorical_probabilities_match_the_definition():
    eta = np.array([0.4, -0.7])
    tau = np.array([-0.5, 0.3, 1.1])
    p = probabilities(np, "sratio", "logit", eta, tau)
    F = special.expit(tau[None, :] - eta[:, None])
    expected = np.column_stack([
        F[:, 0], F[:, 1] * (1 - F[:, 0]), F[:, 2] * (1 - F[:, 0]) * (1 - F[:, 1]),
        (1 - F[:, 0]) * (1 - F[:, 1]) * (1 - F[:, 2]),
    ])
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    logits = np.array([[0.2, -1.0, 3.0], [800.0, 0.0, -5.0]])
    q = probabilities(np, "categorical", "softmax", logits)
    full = np.column_stack([np.zeros(2), logits])
    np.testing.assert_allclose(q, special.softmax(full, axis=1), rtol=1e-12)


@pytest.mark.parametrize("family,link", [("cumulative", "probit"), ("sratio", "cloglog"),
                                         ("categorical", "softmax")])
def test_pytensor_probabilities_equal_numpy(family, link):
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(1)
    if family == "categorical":
        eta_value, tau_value = rng.normal(size=(5, 3)), None
        eta = pt.matrix("eta")
        out = probabilities(pt, family, link, eta)
        fn = pytensor.function([eta], out)
        got = fn(eta_value)
    else:
        eta_value, tau_value = rng.normal(size=5), np.sort(rng.normal(size=3))
        eta, tau = pt.vector("eta"), pt.tensor("tau", shape=(3,))
        fn = pytensor.function([eta, tau], probabilities(pt, family, link, eta, tau))
        got = fn(eta_value, tau_value)
    np.testing.assert_allclose(got, probabilities(np, family, link, eta_value, tau_value),
                               rtol=1e-10)


# -- the response ------------------------------------------------------------------------------


def test_ordered_categorical_response_keeps_its_order_and_the_data(small):
    data = small.assign(rating=pd.Categorical(
        small["rating"].map({1: "easy", 2: "fair", 3: "hard", 4: "awful"}),
        categories=["easy", "fair", "hard", "awful"], ordered=True))
    before = data.copy()
    design = bm.Model(FORMULA, data, family="cumulative").design
    assert design.categories.levels == ("easy", "fair", "hard", "awful")
    np.testing.assert_array_equal(design.categories.codes, small["rating"].to_numpy() - 1)
    assert "Intercept" not in design.common.columns  # thresholds take its place
    pd.testing.assert_frame_equal(data, before)


def test_integer_response_gives_sorted_categories(small):
    design = bm.Model(FORMULA, small, family="sratio").design
    assert design.categories.levels == (1, 2, 3, 4)
    assert design.layout.dims()["threshold"] == ["threshold_dim"]


@pytest.mark.parametrize(
    "values,family,match",
    [
        (["a", "b"], "cumulative", "ordered categorical"),
        (pd.Categorical(["a", "b"]), "sratio", "unordered categorical"),
        ([1.5, 2.0], "cumulative", "non-integer"),
        ([2, 2], "categorical", "only one category"),
    ],
)
def test_bad_responses_are_refused_before_fitting(values, family, match):
    n = 20
    y = np.resize(np.asarray(values, dtype=object), n)
    if isinstance(values, pd.Categorical):
        y = pd.Categorical(np.resize(np.asarray(values), n))
    data = pd.DataFrame({"y": y, "x": np.arange(n, dtype=float), "g": np.repeat(["a", "b"], 10)})
    if not isinstance(values, pd.Categorical) and not isinstance(values[0], str):
        data["y"] = data["y"].astype(float)
    with pytest.raises(bm.errors.DataError, match=match):
        _ = bm.Model("y ~ x + (1 | g)", data, family=family).design


def test_text_response_is_fine_for_categorical(small):
    data = small.assign(rating=small["rating"].map({1: "a", 2: "b", 3: "c", 4: "d"}))
    design = bm.Model(FORMULA, data, family="categorical").design
    assert design.categories.levels == ("a", "b", "c", "d")
    assert design.common.columns[:2] == ["mub_Intercept", "mub_treat"]
    assert [f.terms for f in design.factors] == [["mub_Intercept", "muc_Intercept",
                                                 "mud_Intercept"]]


def test_links_are_checked(small):
    with pytest.raises(bm.errors.FamilyError, match="link='identity'"):
        _ = bm.Model(FORMULA, small, family="cumulative", link="identity").design
    with pytest.raises(bm.errors.FamilyError, match="not supported"):
        _ = bm.Model(FORMULA, small, family="multinomial").design


# -- a fit: names, shapes, predictions, files, plots ----------------------------------------


def test_thresholds_are_named_as_brms(cumulative_fit):
    table = cumulative_fit.summary()
    assert table.index.tolist() == ["Intercept[1]", "Intercept[2]", "Intercept[3]", "treat",
                                    "period", "carry", "sd(Intercept|subject)"]
    assert np.all(np.diff(table.loc[["Intercept[1]", "Intercept[2]", "Intercept[3]"],
                                    "mean"]) > 0)
    assert cumulative_fit.posterior["threshold"].dims == ("chain", "draw", "threshold_dim")
    assert cumulative_fit.settings.engine == "nuts"
    assert "cumulative family" in cumulative_fit.settings.engine_reason
    text = repr(cumulative_fit)
    assert text.index("Population-Level Effects") < text.index("Intercept[1]")


def test_mean_prediction_has_a_category_dimension(cumulative_fit, small):
    pred = cumulative_fit.predict(kind="mean")
    assert pred.draws.dims == ("chain", "draw", "row", "category")
    assert pred.draws.shape == (2, 150, len(small), 4)
    assert pred.draws["category"].values.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(pred.draws.sum("category").values, 1.0, atol=1e-12)
    table = pred.summary()
    assert table.index.names == ["row", "category"] and len(table) == 4 * len(small)
    # the observed frequencies are close to the mean probabilities
    observed = small["rating"].value_counts(normalize=True).sort_index().to_numpy()
    np.testing.assert_allclose(pred.draws.mean(("chain", "draw", "row")).values, observed,
                               atol=0.04)


def test_response_draws_are_categories(cumulative_fit, small):
    pred = cumulative_fit.predict(kind="response", random_seed=1)
    assert pred.draws.dims == ("chain", "draw", "row")
    assert set(np.unique(pred.draws.values)) <= {1, 2, 3, 4}
    again = cumulative_fit.predict(kind="response", random_seed=1)
    np.testing.assert_array_equal(pred.draws.values, again.draws.values)
    share = (pred.draws.values == 1).mean()
    assert abs(share - (small["rating"] == 1).mean()) < 0.05


def test_new_data_and_new_groups(cumulative_fit):
    new = pd.DataFrame({"treat": [0.5, -0.5], "period": [0.5, -0.5], "carry": [0, 0],
                        "subject": ["1", "new"]}, index=["a", "b"])
    with pytest.raises(bm.errors.PredictionError, match="new"):
        cumulative_fit.predict(new)
    pred = cumulative_fit.predict(new, new_groups="gaussian", random_seed=2)
    assert pred.draws.shape[2:] == (2, 4)
    assert pred.draws["row"].values.tolist() == ["a", "b"]
    fixed = cumulative_fit.predict(new, include_groups=False).draws.mean(("chain", "draw"))
    # treat lowers the latent score: the treated row is more likely rated 1
    assert fixed.sel(row="a", category=1) > fixed.sel(row="b", category=1)


def test_log_likelihood_and_ppc(cumulative_fit, small):
    tree = cumulative_fit.log_likelihood()
    values = tree["log_likelihood"]["rating"].values
    assert values.shape == (2, 150, len(small)) and np.all(values < 0)
    probs = cumulative_fit.predict(kind="mean").draws.values
    codes = small["rating"].to_numpy() - 1
    np.testing.assert_allclose(values[0, 0], np.log(probs[0, 0, np.arange(len(small)), codes]))
    import matplotlib

    matplotlib.use("Agg")
    fig = bm.plot_ppc(cumulative_fit, random_seed=1)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == small["rating"].value_counts().sort_index().tolist()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert ax.get_xlabel() == "rating"


def test_save_and_load_round_trip(cumulative_fit, tmp_path):
    path = cumulative_fit.save(tmp_path / "inhaler.bmfit")
    loaded = bm.load(path)
    pd.testing.assert_frame_equal(loaded.summary(), cumulative_fit.summary())
    np.testing.assert_allclose(loaded.predict(kind="mean").draws.values,
                               cumulative_fit.predict(kind="mean").draws.values)
    assert loaded.design.categories.levels == (1, 2, 3, 4)


def test_conditional_effects_explain_the_category_dimension(cumulative_fit):
    with pytest.raises(bm.errors.FitError, match="probability per category"):
        bm.conditional_effects(cumulative_fit, "treat")
    with pytest.raises(bm.errors.FitError, match="category probabilities"):
        cumulative_fit.r2()


def test_threshold_prior_override_by_brms_name(small):
    model = bm.Model(FORMULA, small, family="cumulative",
                     priors={"Intercept": bm.Prior("Normal", mu=0, sigma=3)})
    assert model.priors.family["threshold"] == bm.Prior("Normal", mu=0, sigma=3)


# -- other families: smoke fits with the right shapes -----------------------------------------


@pytest.mark.parametrize("family,link", [("cumulative", "probit"), ("sratio", None)])
def test_probit_and_sratio_fit(small, family, link):
    fit = _fit(small, family, link)
    table = fit.summary()
    assert table.index[:3].tolist() == ["Intercept[1]", "Intercept[2]", "Intercept[3]"]
    assert table.loc["treat", "mean"] < 0  # as in brms's cumulative fit
    assert fit.predict(kind="mean").draws.shape == (2, 150, len(small), 4)
    if link == "probit":  # about 1/1.7 of the logit scale
        assert -1.2 < table.loc["treat", "mean"] < -0.2


def test_categorical_fit_with_correlated_blocks(small):
    fit = _fit(small, "categorical", formula="rating ~ treat + (1 + period | subject)")
    table = fit.summary()
    for mu in ("mu2", "mu3", "mu4"):
        assert f"{mu}_Intercept" in table.index and f"{mu}_treat" in table.index
        assert f"sd({mu}_period|subject)" in table.index
        assert f"cor({mu}_Intercept,{mu}_period|subject)" in table.index
    assert "cor(mu2_Intercept,mu3_Intercept|subject)" not in table.index
    assert fit.posterior["r_subject"].shape[-1] == 6
    pred = fit.predict(kind="mean")
    assert pred.draws.shape == (2, 150, len(small), 4)
    np.testing.assert_allclose(pred.draws.sum("category").values, 1.0, atol=1e-12)
    linear = fit.predict(kind="linear")
    assert linear.draws.dims == ("chain", "draw", "row", "predictor")
    assert linear.draws["predictor"].values.tolist() == ["mu2", "mu3", "mu4"]
    observed = small["rating"].value_counts(normalize=True).sort_index().to_numpy()
    np.testing.assert_allclose(pred.draws.mean(("chain", "draw", "row")).values, observed,
                               atol=0.05)


# -- brms's inhaler fit -----------------------------------------------------------------------

#: brms 2.18, cumulative logit, 4 chains x (1000 + 1000), seed 1
#: (../shared/reference/WORKFLOW_REFERENCE.md): posterior mean and SD
BRMS_INHALER = {
    "Intercept[1]": (0.6960, 0.1350),
    "Intercept[2]": (3.8468, 0.3210),
    "Intercept[3]": (5.1500, 0.4636),
    "treat": (-1.0534, 0.3243),
    "period": (0.2305, 0.1899),
    "carry": (-0.2345, 0.2460),
}
BRMS_SD = (1.1899, 0.2489)


@pytest.mark.slow
def test_inhaler_cumulative_agrees_with_brms(inhaler):
    fit = bm.Model(FORMULA, inhaler, family="cumulative").fit(
        draws=1000, tune=1000, chains=4, random_seed=1
    )
    table = fit.summary()
    assert table["r_hat"].max() < 1.01
    for label, (mean, sd) in BRMS_INHALER.items():
        assert abs(table.loc[label, "mean"] - mean) < 0.3 * sd, label
        assert abs(table.loc[label, "sd"] / sd - 1) < 0.15, label
    row = table.loc["sd(Intercept|subject)"]
    assert abs(row["mean"] / BRMS_SD[0] - 1) < 0.15
    assert abs(row["mean"] - BRMS_SD[0]) < 0.3 * BRMS_SD[1]
